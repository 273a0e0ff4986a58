"""The spec names the stable version: restore what drifted, update config in place."""

from __future__ import annotations

from typing import Any

from mlops.core import Address
from mlops.plan import integrity, order, outside, payloads, result, rollout
from mlops.plan import types as t
from mlops.spec import models as spec
from mlops.state import models as state

K = t.ActionKind
S = t.ChangeSymbol


def steady(
    item: result.Desired,
    registry: state.RegistryModel,
    runtime: state.RuntimeModel | None,
    seq: order.Sequence,
    *,
    shared_engine: bool = False,
) -> result.ModelResult:
    """The spec names the stable version: restore what drifted, update config in place.
    `shared_engine`: the model's replicas are the engine's, planned for every model at once
    (plan/engine.py), so they are no change of this model's."""
    deployment = item.deployment
    name, version = deployment.name, deployment.spec.model.version
    outcome = result.ModelResult()
    reasons: list[str] = []
    canary = registry.canary
    reset = False
    if canary and canary != version:
        outcome.warnings.append(
            f"{name}: the rollout of {canary} in progress is abandoned: the spec names the "
            f"stable version {version}"
        )
        reasons.append(f"abandon the rollout of {canary}")
        reset = rollout.retire_candidate(
            seq, runtime, canary, version, "the spec names the stable version"
        )
        seq.add(
            K.PROMOTE,
            Address.deployment(name),
            S.UPDATE,
            t.PromotePayload(aliases={"stable": version}, clear=["canary"]),
            before=t.Aliases(aliases=dict(registry.aliases)),
            reason=f"clear the canary alias of the abandoned {canary}",
        )
    loaded = runtime is not None and version in runtime.loaded
    tampered = integrity.mismatch(registry, runtime, version)
    if tampered is not None:
        reasons.append(f"reload {version}: it serves other bytes than the registered ones")
        rollout.verify(seq, name, version, tampered.registered)
        rollout.load(seq, deployment, reason=tampered.reason(), sha256=tampered.registered)
    if not loaded:
        why = "the runtime is not running" if runtime is None else "it is not loaded"
        reasons.append(f"load the stable version ({why})")
        rollout.load(seq, deployment, reason=f"stable version {version} is not serving: {why}")
    if not loaded or (_off_target(runtime, version) and not reset):
        before = rollout.traffic_before(runtime)
        seq.add(
            K.SET_TRAFFIC,
            Address.traffic(name),
            S.UPDATE if before else S.CREATE,
            t.TrafficPayload(weights={version: 100}, shadow=None),
            before=before,
            reason=f"all traffic to the stable version {version}",
        )
        if loaded:
            reasons.append("restore 100% of traffic to the stable version")
    serving = serving_changes(item.served, deployment.spec.serving)
    replaced = False
    if loaded and runtime is not None and tampered is None and serving and not shared_engine:
        # Pods take new resources (or a new autoscaler) only by being replaced: a rolling
        # reload of the registered bytes, the version keeping its traffic.
        registered = registry.versions.get(version)
        why = f"{', '.join(serving)}: the replicas restart with it (rolling, traffic kept)"
        reasons.append(f"replace {version}'s replicas: {', '.join(serving)}")
        rollout.load(seq, deployment, reason=why, sha256=registered.sha256 if registered else None)
        replaced = True
    # A reload applies the settings (and the replicas) itself.
    if loaded and runtime is not None and tampered is None and not replaced:
        update = _config_update(deployment, runtime, shared_engine=shared_engine, force=serving)
        if update is not None:
            reasons.append("update batching/replicas in place")
            if serving:
                reasons[-1] = f"update in place: {', '.join(serving)}"
            seq.add(
                K.UPDATE_CONFIG,
                Address.version(name, version),
                S.UPDATE,
                update[1],
                before=update[0],
                reason="config-only change: applied in place, no new version"
                + (f" ({', '.join(serving)})" if serving else ""),
            )
    if seq.actions:
        outcome.actions, outcome.rollback = seq.actions, seq.rollback
        outcome.change = t.ModelChange(
            name=name,
            symbol=S.UPDATE,
            from_version=version,
            to_version=version,
            strategy="config" if _config_only(reasons) else "restore",
            reason="; ".join(reasons),
        )
    return outcome


def _config_only(reasons: list[str]) -> bool:
    return len(reasons) == 1 and reasons[0].startswith(("update ", "replace "))


def serving_changes(served: spec.Serving | None, wanted: spec.Serving) -> list[str]:
    """What changed in `serving.hardware` and `serving.autoscaling` since apply last applied
    them (`served`; None: not recorded, nothing to compare), one phrase per field."""
    if served is None:
        return []
    changes = []
    old_hw, new_hw = served.hardware, wanted.hardware
    for key in ("cpu", "memory", "accelerator", "count"):
        before, after = getattr(old_hw, key), getattr(new_hw, key)
        if before != after:
            changes.append(f"serving.hardware.{key} {before} -> {after}")
    old_as, new_as = served.autoscaling, wanted.autoscaling
    if old_as != new_as:
        changes.append(f"serving.autoscaling {_scaling(old_as)} -> {_scaling(new_as)}")
    return changes


def _scaling(value: spec.Autoscaling | None) -> str:
    return "none" if value is None else f"{value.metric} target {value.target:g}"


def _off_target(runtime: state.RuntimeModel | None, version: str) -> bool:
    return runtime is None or (
        outside.serving_weights(runtime) != {version: 100} or runtime.shadow is not None
    )


def _config_update(
    deployment: spec.ModelDeployment,
    runtime: state.RuntimeModel,
    *,
    shared_engine: bool = False,
    force: list[str] | None = None,
) -> tuple[t.ObservedConfig, t.UpdateConfigPayload] | None:
    """(before, after) of an in-place update, or None. Unknown live config is not a change.
    `force`: serving changes (hardware, autoscaling) that make it an update regardless."""
    version = deployment.spec.model.version
    current: Any = runtime.config.get(version)
    if not isinstance(current, dict):
        current = runtime.config
    desired = payloads.settings(deployment)
    bounds = deployment.spec.serving.replicas
    batching_differs = "batching" in current and payloads.comparable_settings(
        current
    ) != payloads.comparable_settings(desired.engine_json())
    # Replicas anywhere in the declared range are fine: autoscaling moves them.
    replicas_off = (
        not shared_engine
        and runtime.replicas > 0
        and not bounds.min <= runtime.replicas <= bounds.max
    )
    if not (batching_differs or replicas_off or force):
        return None
    replicas = runtime.replicas if not replicas_off else payloads.replicas(deployment)
    # Absent batching keys are the engine's defaults: show them as such, not as a change.
    settings = {**current, **payloads.comparable_settings(current)}
    before = t.ObservedConfig(semver=version, settings=settings, replicas=runtime.replicas)
    after = t.UpdateConfigPayload(semver=version, settings=desired, replicas=replicas)
    return before, after
