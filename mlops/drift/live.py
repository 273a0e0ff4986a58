"""`mlops drift NAME --live`: drift of the inputs the engine sampled from live traffic.

The engine keeps a reservoir of recent inputs per version (mlops/serving/sampling.py); this
reads every worker's, merges them, and reports exactly as on a data file. On the way it gives
the workers the version's training statistics, which their drift gauges
(`mlops_feature_drift_sigma`, `_psi`) compare against.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pydantic

from mlops import errors, fsio
from mlops.drift import hook, report, run
from mlops.providers import factory
from mlops.providers.engine import client as engine_client
from mlops.providers.engine import samples as engine_samples
from mlops.spec import load
from mlops.spec import models as spec
from mlops.state import models as state
from mlops.workspace import Workspace

# Fewer sampled rows than this say little about a distribution: no verdict yet.
MIN_ROWS = 100


@dataclass(frozen=True)
class Target:
    name: str
    version: str
    input_names: tuple[str, ...]
    training: tuple[state.FeatureStats, ...]
    monitoring: spec.Drift


def deployments(ws: Workspace) -> list[spec.ModelDeployment]:
    specs = ws.root / "specs"
    return [item.deployment for item in load.load_specs([specs], ws.root)] if specs.is_dir() else []


def registered_version(registry: Any, name: str, version: str | None) -> tuple[str, Any]:
    """NAME@VERSION (default: the stable version) as the registry records it, or a one-line
    RegistryError naming what is missing."""
    model = registry.refresh([name]).get(name)
    if model is None:
        raise errors.RegistryError(f"model {name!r} is not in the registry")
    if version is None:
        if model.stable is None:
            raise errors.RegistryError(f"{name} has no stable version yet; pass --version")
        version = model.stable
    registered = model.versions.get(version)
    if registered is None:
        known = ", ".join(sorted(model.versions)) or "none"
        raise errors.RegistryError(f"{name}@{version} is not in the registry (versions: {known})")
    return version, registered


def lookup(ws: Workspace, name: str, version: str | None) -> Target:
    """NAME@VERSION (default: stable) as the registry knows it, with its spec's monitoring."""
    try:
        spec.Metadata(name=name)
    except pydantic.ValidationError:
        raise errors.UsageError(f"{name!r} is not a model name (DNS-1123 label)") from None
    registry = factory.registry(ws)
    version, registered = registered_version(registry, name, version)
    return Target(
        name=name,
        version=version,
        input_names=tuple(t.name for t in registered.signature.inputs),
        training=tuple(registry.training_stats(name, version)),
        monitoring=run.find_monitoring(deployments(ws), name),
    )


def execute(
    ws: Workspace,
    name: str,
    *,
    version: str | None = None,
    report_path: Path | None = None,
    report_label: str | None = None,
    run_hook: bool = False,
    hook_timeout: float = hook.DEFAULT_TIMEOUT,
    min_rows: int = MIN_ROWS,
    save: Path | None = None,
    progress: report.Progress | None = None,
) -> report.DriftRun:
    """Drift of the engine's samples; with `save`, the merged samples are also written there
    (.npz, one array per input: `mlops drift --data` reads it back)."""
    if save is not None and save.suffix.lower() != ".npz":
        raise errors.UsageError(f"samples file {str(save)!r} must be an .npz file")
    target = lookup(ws, name, version)
    request = run.Request(
        model=target.name,
        version=target.version,
        input_names=target.input_names,
        training=target.training,
        data=None,
        data_label="live samples",
        workspace=ws.root,
        monitoring=target.monitoring,
        report=report_path,
        report_label=report_label,
        run_hook=run_hook,
        hook_timeout=hook_timeout,
    )
    run.check(request)  # before the engine is asked anything
    found = read(ws, target)
    if found.rows < min_rows:
        raise errors.UsageError(
            f"{found.rows} live row(s) of {target.name}@{target.version} sampled so far "
            f"(at least {min_rows} are needed for a verdict); send traffic, or lower --min-rows"
        )
    if save is not None:
        with fsio.atomic_writer(save, mode=0o600) as out:  # users' data: not world-readable
            savez: Any = np.savez  # typed for its keyword options, not array names
            savez(out, **found.arrays)
    label = f"live samples ({found.rows} rows from {found.workers} worker(s))"
    return run.evaluate(replace(request, data_label=label), found.arrays, progress=progress)


def read(ws: Workspace, target: Target) -> engine_samples.Samples:
    """Every worker's samples of the version, merged; each worker gets the baseline first."""
    admins = engine_samples.admins(ws)
    try:
        engine_samples.push_baseline(admins, target.name, target.version, target.training)
        return engine_samples.read(admins, target.name, target.version)
    except engine_client.EngineRejected as exc:
        if exc.status == 404:
            raise errors.UsageError(
                f"{target.name}@{target.version} is not loaded in the engine: {exc}"
            ) from None
        raise
    finally:
        for admin in admins:
            admin.close()
