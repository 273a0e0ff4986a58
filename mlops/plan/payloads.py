"""The `after` payloads of actions, built from a spec. Keys are fixed per kind (see ActionKind)."""

from __future__ import annotations

from typing import Any

from mlops.spec import models as spec

# Warm-up requests the engine runs before a version reports ready; the spec has no knob for it.
WARMUP_REQUESTS = 2
# Conformance p99 allowance when the rollout declares no latency_p99 max_increase gate.
DEFAULT_P99_INCREASE = 0.20


def engine_settings(
    deployment: spec.ModelDeployment, signature: spec.Signature | None = None
) -> dict[str, Any]:
    """settings.json for the engine (docs/engine.md) from the spec; `signature` overrides the
    spec's for another version of the same model (the stable one, reloaded for a canary)."""
    model = deployment.spec.model
    batching = deployment.spec.serving.batching
    return {
        "signature": (signature or model.signature).model_dump(mode="json"),
        "batching": batching.model_dump(mode="json", exclude_none=True),
        "warmup": {"requests": WARMUP_REQUESTS},
    }


def replicas(deployment: spec.ModelDeployment) -> int:
    return deployment.spec.serving.replicas.min


def gate(gate: spec.Gate) -> dict[str, Any]:
    return gate.model_dump(mode="json", exclude_none=True)


def conformance(deployment: spec.ModelDeployment) -> dict[str, Any]:
    model = deployment.spec.model
    increase = DEFAULT_P99_INCREASE
    for declared in deployment.spec.rollout.effective_gates:
        if declared.metric == "latency_p99" and declared.max_increase is not None:
            increase = declared.max_increase
    return {
        "semver": model.version,
        "metric": model.baseline.metric,
        "baseline": model.baseline.value,
        "tolerance": model.validation.tolerance if model.validation else None,
        "p99_ms": model.baseline.p99_ms,
        "max_increase": increase,
    }


def checkpoint(
    deployment: spec.ModelDeployment,
    *,
    stable: str | None,
    weight: int,
    hold: float,
    shadow: bool,
) -> dict[str, Any]:
    rollout = deployment.spec.rollout
    gates = rollout.effective_gates
    if not shadow:
        # Agreement is only measured while mirroring; once weights move there is no shadow data.
        gates = tuple(g for g in gates if g.metric != "shadow_agreement")
    return {
        "stable": stable,
        "canary": deployment.spec.model.version,
        "weight": weight,
        "hold": hold,
        "interval": rollout.interval,
        "min_requests": rollout.min_requests,
        "consecutive_errors": rollout.consecutive_errors,
        "gates": [gate(g) for g in gates],
        "shadow": shadow,
    }


def comparable_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The part of engine settings that an in-place update can change (batching)."""
    batching = dict(settings.get("batching") or {})
    defaults = spec.Batching().model_dump(mode="json", exclude_none=True)
    return {"batching": {**defaults, **batching}}
