"""One drift check end to end, given what the registry knows: load, compare, report, hook.

The registry lookups (stable alias, signature, training statistics) happen in `mlops.api`;
everything here works on values and workspace files, so it needs no provider.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mlops import datasets, errors
from mlops.drift import hook, report, stats, webhook
from mlops.spec import models as spec
from mlops.state import models as state


@dataclass(frozen=True)
class Request:
    model: str
    version: str
    input_names: tuple[str, ...]
    training: tuple[state.FeatureStats, ...]
    data: Path | None  # resolved inside the workspace; None: the inputs are given (live)
    data_label: str  # as the user wrote it (or where live samples came from), for reports
    workspace: Path
    monitoring: spec.Drift = field(default_factory=spec.Drift)
    report: Path | None = None  # resolved inside the workspace
    report_label: str | None = None
    run_hook: bool = False
    hook_timeout: float = hook.DEFAULT_TIMEOUT


def check_report_path(path: Path) -> None:
    if path.suffix.lower() not in (".html", ".htm"):
        raise errors.UsageError(f"report {str(path)!r} must be an .html file")
    if path.is_dir():
        raise errors.UsageError(f"report {str(path)!r} is a directory")


def execute(request: Request, *, progress: report.Progress | None = None) -> report.DriftRun:
    """Load the data file, compare, then write the report (atomically), then run the hook if
    asked and drifted. Every input problem is raised before anything is written."""
    check(request)
    if request.data is None:
        raise errors.UsageError("no data file given")
    inputs = datasets.load_features(request.data, request.input_names)
    return evaluate(request, inputs, progress=progress)


def check(request: Request) -> None:
    """What must hold before any data is read or anything written."""
    if not request.training:
        raise errors.RegistryError(
            f"{request.model}@{request.version} has no training statistics "
            "(it was registered without validation data)"
        )
    if request.report is not None:
        check_report_path(request.report)
    on_drift = request.monitoring.on_drift
    if request.run_hook and on_drift is not None and on_drift.command is not None:
        hook.split(on_drift.command)  # a command that cannot run is a usage error up front


def evaluate(
    request: Request,
    inputs: Mapping[str, np.ndarray[Any, Any]],
    *,
    progress: report.Progress | None = None,
) -> report.DriftRun:
    """Compare `inputs` (a file's, or live samples) with the baseline; report; hook."""
    check(request)
    on_drift = request.monitoring.on_drift
    result = stats.compare(
        request.training,
        stats.columns(inputs),
        threshold_sigma=request.monitoring.threshold_sigma,
    )
    run = report.DriftRun(
        model=request.model,
        version=request.version,
        data=request.data_label,
        result=result,
        report=request.report_label if request.report else None,
        hook_command=on_drift.command if on_drift else None,
        hook_webhook=on_drift.webhook if on_drift else None,
    )
    if request.report is not None:
        report.write_html(run, request.report, progress=progress)
    if request.run_hook and on_drift is not None and result.has_drift:
        run = replace(
            run, hook=notify(run, request.workspace, request.report, request.hook_timeout)
        )
    return run


def notify(
    run: report.DriftRun,
    workspace: Path,
    report_path: Path | None = None,
    timeout: float = hook.DEFAULT_TIMEOUT,
    *,
    on_attempt: webhook.Attempted | None = None,
) -> hook.HookResult:
    """Run the on_drift command, or POST to the on_drift webhook, once (with retries)."""
    if run.hook_webhook is not None:
        return webhook.post(
            run.hook_webhook,
            webhook.payload(run),
            timeout=min(timeout, 30.0),
            on_attempt=on_attempt,
        )
    if run.hook_command is None:
        raise errors.UsageError(f"{run.model}'s spec declares no on_drift command or webhook")
    env = hook.drift_env(run.model, run.version, [f.name for f in run.result.drifted], report_path)
    return hook.run(run.hook_command, workspace, env=env, timeout=timeout)


def find_monitoring(deployments: Sequence[spec.ModelDeployment], name: str) -> spec.Drift:
    """The spec's monitoring.drift for `name`, or the defaults when no spec declares it."""
    for deployment in deployments:
        if deployment.name == name:
            return deployment.spec.monitoring.drift
    return spec.Drift()
