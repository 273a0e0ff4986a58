"""Per-model action sequences: keep a stable version right, or roll a new version out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops.core import Address
from mlops.plan import order, outside, payloads
from mlops.plan import types as t
from mlops.spec import models as spec
from mlops.state import models as state

if TYPE_CHECKING:
    from mlops.plan.diff import Desired, ModelResult

K = t.ActionKind
S = t.ChangeSymbol


def steady(
    item: Desired,
    registry: state.RegistryModel,
    runtime: state.RuntimeModel | None,
    seq: order.Sequence,
) -> ModelResult:
    """The spec names the stable version: restore what drifted, update config in place."""
    from mlops.plan.diff import ModelResult

    deployment = item.deployment
    name, version = deployment.name, deployment.spec.model.version
    result = ModelResult()
    reasons: list[str] = []
    canary = registry.canary
    reset = False
    if canary and canary != version:
        result.warnings.append(
            f"{name}: the rollout of {canary} in progress is abandoned: the spec names the "
            f"stable version {version}"
        )
        reasons.append(f"abandon the rollout of {canary}")
        reset = _retire_candidate(
            seq, runtime, canary, version, "the spec names the stable version"
        )
        seq.add(
            K.PROMOTE,
            Address.deployment(name),
            S.UPDATE,
            {"aliases": {"stable": version}, "clear": ["canary"]},
            before={"aliases": dict(registry.aliases)},
            reason=f"clear the canary alias of the abandoned {canary}",
        )
    loaded = runtime is not None and version in runtime.loaded
    if not loaded:
        why = "the runtime is not running" if runtime is None else "it is not loaded"
        reasons.append(f"load the stable version ({why})")
        _load(seq, deployment, reason=f"stable version {version} is not serving: {why}")
    if not loaded or (_off_target(runtime, version) and not reset):
        before = _traffic_before(runtime)
        seq.add(
            K.SET_TRAFFIC,
            Address.traffic(name),
            S.UPDATE if before else S.CREATE,
            {"weights": {version: 100}, "shadow": None},
            before=before,
            reason=f"all traffic to the stable version {version}",
        )
        if loaded:
            reasons.append("restore 100% of traffic to the stable version")
    if loaded and runtime is not None:
        update = _config_update(deployment, runtime)
        if update is not None:
            reasons.append("update batching/replicas in place")
            seq.add(
                K.UPDATE_CONFIG,
                Address.version(name, version),
                S.UPDATE,
                update[1],
                before=update[0],
                reason="config-only change: applied in place, no new version",
            )
    if seq.actions:
        result.actions, result.rollback = seq.actions, seq.rollback
        result.change = t.ModelChange(
            name=name,
            symbol=S.UPDATE,
            from_version=version,
            to_version=version,
            strategy="config" if reasons == ["update batching/replicas in place"] else "restore",
            reason="; ".join(reasons),
        )
    return result


def new_version(
    item: Desired,
    registry: state.RegistryModel,
    runtime: state.RuntimeModel | None,
    seq: order.Sequence,
    rate: float | None,
) -> ModelResult:
    """Register, verify, test, load, then shadow/canary/immediate, promote, retire."""
    from mlops.plan.diff import ModelResult

    deployment = item.deployment
    name, model = deployment.name, deployment.spec.model
    version, stable = model.version, seq.stable
    rollout = deployment.spec.rollout
    registered = registry.versions.get(version)
    result = ModelResult()
    first = stable is None
    gated = not first and rollout.strategy is not spec.Strategy.IMMEDIATE
    in_progress = registry.canary == version and not first
    if registry.canary and registry.canary != version:
        result.warnings.append(
            f"{name}: the rollout of {registry.canary} in progress is superseded by {version}"
        )
        _retire_candidate(seq, runtime, registry.canary, stable, f"superseded by {version}")
    seq.candidate = version
    loaded = runtime is not None and version in runtime.loaded
    weight = runtime.weights.get(version, 0) if runtime is not None else 0
    if in_progress:
        shadowing = runtime is not None and runtime.shadow is not None
        seq.canary_alias, seq.loaded_candidate = True, loaded
        seq.touched_traffic = weight > 0 or (shadowing and runtime.shadow.version == version)  # type: ignore[union-attr]
    if registered is None:
        seq.add(
            K.REGISTER,
            Address.version(name, version),
            S.CREATE,
            {
                "semver": version,
                "artifact": item.artifact,
                "sha256": model.sha256,
                "validation": item.validation,
            },
            reason="new version: store the artifact, checksum, signature and baseline",
        )
    if not loaded:
        sha = model.sha256 or (registered.sha256 if registered else None)
        seq.add(
            K.VERIFY,
            Address.version(name, version),
            S.READ,
            {"semver": version, "sha256": sha},
            reason="re-hash the stored artifact before it is served",
        )
    if registered is None or registered.status is not state.VersionStatus.CONFORMANT:
        seq.add(
            K.CONFORMANCE_TEST,
            Address.version(name, version),
            S.READ,
            payloads.conformance(deployment),
            reason="accuracy and latency against the baseline before any traffic",
        )
    if not loaded:
        _load(seq, deployment, reason="load with no traffic")
    if gated and not in_progress:
        seq.add(
            K.PROMOTE,
            Address.deployment(name),
            S.UPDATE,
            {"aliases": {"canary": version}, "clear": []},
            before={"aliases": dict(registry.aliases)},
            reason=f"mark {version} as the canary: a rollout is in progress",
        )
    if gated:
        estimate = order.expand_rollout(
            seq, deployment, from_weight=weight, recheck_current=in_progress and weight > 0
        )
        requests = order.canary_requests(deployment, rate, from_weight=weight)
        result.estimate = estimate.model_copy(update={"canary_requests": requests})
    else:
        seq.add(
            K.SET_TRAFFIC,
            Address.traffic(name),
            S.CREATE if first else S.UPDATE,
            {"weights": {version: 100}, "shadow": None},
            before=_traffic_before(runtime),
            reason="all traffic at once" if not first else "first deployment: all traffic",
        )
        result.estimate = t.Estimate(rollout_seconds=0.0, canary_requests=None)
    seq.add(
        K.PROMOTE,
        Address.deployment(name),
        S.CREATE if first else S.UPDATE,
        {"aliases": {"stable": version}, "clear": ["canary"]},
        before={"aliases": dict(registry.aliases)},
        reason=f"{version} becomes the stable version",
    )
    if stable and runtime is not None and stable in runtime.loaded:
        keep = rollout.keep_previous
        seq.add(
            K.RETIRE,
            Address.version(name, stable),
            S.DELETE,
            {"semver": stable, "after_seconds": keep},
            reason=f"unload the previous version after {keep:g}s (kept for instant rollback)",
        )
    result.actions, result.rollback = seq.actions, seq.rollback
    result.change = t.ModelChange(
        name=name,
        symbol=S.CREATE if first else S.REPLACE,
        from_version=stable,
        to_version=version,
        strategy=_strategy(deployment, first),
        weights=[s.weight for s in rollout.steps] if gated else [100],
        shadow_percent=rollout.shadow.percent if gated and rollout.shadow else None,
        reason=_reason(deployment, stable, first, in_progress, weight),
    )
    return result


def _strategy(deployment: spec.ModelDeployment, first: bool) -> str:
    return "first" if first else str(deployment.spec.rollout.strategy)


def _reason(
    deployment: spec.ModelDeployment,
    stable: str | None,
    first: bool,
    in_progress: bool,
    weight: int,
) -> str:
    version = deployment.spec.model.version
    strategy = deployment.spec.rollout.strategy
    if first:
        if strategy is spec.Strategy.IMMEDIATE:
            return f"first deployment of {version}: all traffic after the conformance test"
        return (
            f"first deployment of {version}: there is no stable version to compare against, "
            "so it goes straight to 100% after the conformance test"
        )
    if strategy is spec.Strategy.IMMEDIATE:
        return f"replace {stable} with {version} at once (strategy immediate)"
    if in_progress:
        return (
            f"rollout of {version} in progress at {weight}%: re-check the current step, "
            "then continue"
        )
    return f"{strategy} rollout from {stable} to {version}"


def _load(seq: order.Sequence, deployment: spec.ModelDeployment, *, reason: str) -> None:
    version = deployment.spec.model.version
    seq.add(
        K.LOAD,
        Address.version(deployment.name, version),
        S.CREATE,
        {
            "semver": version,
            "settings": payloads.engine_settings(deployment),
            "replicas": payloads.replicas(deployment),
        },
        reason=reason,
    )


def _retire_candidate(
    seq: order.Sequence,
    runtime: state.RuntimeModel | None,
    candidate: str,
    stable: str | None,
    why: str,
) -> bool:
    """Take an earlier candidate out: its weight to 0 first, then unload it. True when the
    traffic table was reset to the stable version."""
    if runtime is None:
        return False
    shadow = runtime.shadow.version if runtime.shadow else None
    reset = False
    if stable and (runtime.weights.get(candidate, 0) > 0 or shadow == candidate):
        seq.add(
            K.SET_TRAFFIC,
            Address.traffic(seq.name),
            S.UPDATE,
            {"weights": {stable: 100}, "shadow": None},
            before=_traffic_before(runtime),
            reason=f"weight of {candidate} to 0: {why}",
            tag="reset",
        )
        reset = True
    if candidate in runtime.loaded:
        seq.add(
            K.RETIRE,
            Address.version(seq.name, candidate),
            S.DELETE,
            {"semver": candidate, "after_seconds": 0.0},
            reason=f"unload {candidate}: {why}",
            tag=candidate,
        )
    return reset


def _traffic_before(runtime: state.RuntimeModel | None) -> dict[str, Any] | None:
    if runtime is None or not (runtime.weights or runtime.shadow):
        return None
    shadow = runtime.shadow.model_dump(mode="json") if runtime.shadow else None
    return {"weights": dict(runtime.weights), "shadow": shadow}


def _off_target(runtime: state.RuntimeModel | None, version: str) -> bool:
    return runtime is None or (
        outside.serving_weights(runtime) != {version: 100} or runtime.shadow is not None
    )


def _config_update(
    deployment: spec.ModelDeployment, runtime: state.RuntimeModel
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(before, after) of an in-place update, or None. Unknown live config is not a change."""
    version = deployment.spec.model.version
    current: Any = runtime.config.get(version)
    if not isinstance(current, dict):
        current = runtime.config
    desired = payloads.engine_settings(deployment)
    bounds = deployment.spec.serving.replicas
    batching_differs = "batching" in current and payloads.comparable_settings(
        current
    ) != payloads.comparable_settings(desired)
    # Replicas anywhere in the declared range are fine: autoscaling moves them.
    replicas_off = runtime.replicas > 0 and not bounds.min <= runtime.replicas <= bounds.max
    if not (batching_differs or replicas_off):
        return None
    replicas = runtime.replicas if not replicas_off else payloads.replicas(deployment)
    # Absent batching keys are the engine's defaults: show them as such, not as a change.
    settings = {**current, **payloads.comparable_settings(current)}
    before = {"semver": version, "settings": settings, "replicas": runtime.replicas}
    after = {"semver": version, "settings": desired, "replicas": replicas}
    return before, after
