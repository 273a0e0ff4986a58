"""One drift check end to end, given what the registry knows: load, compare, report, hook.

The registry lookups (stable alias, signature, training statistics) happen in `mlops.api`;
everything here works on values and workspace files, so it needs no provider.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from mlops import datasets, errors
from mlops.drift import hook, report, stats
from mlops.spec import models as spec
from mlops.state import models as state


@dataclass(frozen=True)
class Request:
    model: str
    version: str
    input_names: tuple[str, ...]
    training: tuple[state.FeatureStats, ...]
    data: Path  # resolved inside the workspace
    data_label: str  # as the user wrote it, for messages and reports
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
    """Compare, then write the report (atomically), then run the hook if asked and drifted.

    Every input problem is raised before anything is written.
    """
    if not request.training:
        raise errors.RegistryError(
            f"{request.model}@{request.version} has no training statistics "
            "(it was registered without validation data)"
        )
    if request.report is not None:
        check_report_path(request.report)
    on_drift = request.monitoring.on_drift
    if request.run_hook and on_drift is not None:
        hook.split(on_drift.command)  # a command that cannot run is a usage error up front
    inputs = datasets.load_features(request.data, request.input_names)
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
    )
    if request.report is not None:
        report.write_html(run, request.report, progress=progress)
    if request.run_hook and on_drift is not None and result.has_drift:
        env = hook.drift_env(
            request.model, request.version, [f.name for f in result.drifted], request.report
        )
        ran = hook.run(on_drift.command, request.workspace, env=env, timeout=request.hook_timeout)
        run = replace(run, hook=ran)
    return run


def find_monitoring(deployments: Sequence[spec.ModelDeployment], name: str) -> spec.Drift:
    """The spec's monitoring.drift for `name`, or the defaults when no spec declares it."""
    for deployment in deployments:
        if deployment.name == name:
            return deployment.spec.monitoring.drift
    return spec.Drift()
