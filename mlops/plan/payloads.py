"""The payloads of actions, built from a spec (the models are in types.py)."""

from __future__ import annotations

from typing import Any

from mlops.plan import types as t
from mlops.spec import engine
from mlops.spec import models as spec

# Conformance p99 allowance when the rollout declares no latency_p99 max_increase gate.
DEFAULT_P99_INCREASE = 0.20

# The engine's settings of a version: built in mlops.spec.engine, below the planner, because
# the kubernetes target renders the same ones (`mlops manifests`).
settings = engine.settings
engine_settings = engine.engine_settings
WARMUP_REQUESTS = engine.WARMUP_REQUESTS


def replicas(deployment: spec.ModelDeployment) -> int:
    return deployment.spec.serving.replicas.min


def register(
    deployment: spec.ModelDeployment, artifact: str, validation: str | None
) -> t.RegisterPayload:
    """`artifact` and `validation`: workspace-relative paths (or a models:/ URI)."""
    model = deployment.spec.model
    return t.RegisterPayload(
        semver=model.version,
        artifact=artifact,
        sha256=model.sha256,
        signature=model.signature,
        baseline=model.baseline,
        validation=(
            t.ValidationData(data=validation, tolerance=model.validation.tolerance)
            if validation is not None and model.validation is not None
            else None
        ),
    )


def conformance_test(
    deployment: spec.ModelDeployment, validation: str | None = None
) -> t.ConformancePayload:
    model = deployment.spec.model
    increase = DEFAULT_P99_INCREASE
    for declared in deployment.spec.rollout.effective_gates:
        if declared.metric == "latency_p99" and declared.max_increase is not None:
            increase = declared.max_increase
    return t.ConformancePayload(
        semver=model.version,
        metric=model.baseline.metric,
        baseline=model.baseline.value,
        tolerance=model.validation.tolerance if model.validation else None,
        p99_ms=model.baseline.p99_ms,
        max_increase=increase,
        validation=validation,
        settings=settings(deployment),
        replicas=replicas(deployment),
    )


def conformance(deployment: spec.ModelDeployment) -> dict[str, Any]:
    """The conformance_test payload as JSON (what `mlops.conformance.run` reads)."""
    return conformance_test(deployment).model_dump(mode="json")


def checkpoint(
    deployment: spec.ModelDeployment,
    *,
    stable: str | None,
    weight: int,
    hold: float,
    shadow: bool,
) -> t.CheckpointPayload:
    rollout = deployment.spec.rollout
    gates = rollout.effective_gates
    if not shadow:
        # Agreement is only measured while mirroring; once weights move there is no shadow data.
        gates = tuple(g for g in gates if g.metric != "shadow_agreement")
    return t.CheckpointPayload(
        stable=stable,
        canary=deployment.spec.model.version,
        weight=weight,
        hold=hold,
        interval=rollout.interval,
        min_requests=rollout.min_requests,
        consecutive_errors=rollout.consecutive_errors,
        gates=list(gates),
        shadow=shadow,
    )


def comparable_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The part of engine settings that an in-place update can change (batching)."""
    batching = dict(settings.get("batching") or {})
    defaults = spec.Batching().model_dump(mode="json", exclude_none=True)
    return {"batching": {**defaults, **batching}}
