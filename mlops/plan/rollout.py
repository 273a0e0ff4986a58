"""A new version for a model: register, verify, test, load, then shadow/canary/immediate."""

from __future__ import annotations

from mlops.core import Address
from mlops.plan import images, integrity, order, payloads, result
from mlops.plan import types as t
from mlops.spec import models as spec
from mlops.state import models as state

K = t.ActionKind
S = t.ChangeSymbol


def new_version(
    item: result.Desired,
    registry: state.RegistryModel,
    runtime: state.RuntimeModel | None,
    seq: order.Sequence,
    rate: float | None,
    *,
    found_images: state.ImagesState | None = None,
) -> result.ModelResult:
    """Register, verify, (build and push its image,) test, load, then shadow/canary/immediate,
    promote, retire. `found_images`: workspaces with `images:` (plan/images.py)."""
    deployment = item.deployment
    name, model = deployment.name, deployment.spec.model
    version, stable = model.version, seq.stable
    rollout = deployment.spec.rollout
    registered = registry.versions.get(version)
    outcome = result.ModelResult()
    first = stable is None
    gated = not first and rollout.strategy is not spec.Strategy.IMMEDIATE
    in_progress = registry.canary == version and not first
    if registry.canary and registry.canary != version:
        outcome.warnings.append(
            f"{name}: the rollout of {registry.canary} in progress is superseded by {version}"
        )
        retire_candidate(seq, runtime, registry.canary, stable, f"superseded by {version}")
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
            payloads.register(deployment, item.artifact, item.validation),
            reason="new version: store the artifact, checksum, signature and baseline",
        )
    if not loaded:
        verify(seq, name, version, model.sha256 or (registered.sha256 if registered else None))
    images.add_steps(seq, item, registered, found_images)
    if registered is None or registered.status is not state.VersionStatus.CONFORMANT:
        seq.add(
            K.CONFORMANCE_TEST,
            Address.version(name, version),
            S.READ,
            payloads.conformance_test(deployment, item.validation),
            reason="accuracy and latency against the baseline before any traffic",
        )
    if not loaded:
        load(seq, deployment, reason="load with no traffic")
    _repair(seq, deployment, registry, runtime, version)
    stable_loaded = stable is not None and runtime is not None and stable in runtime.loaded
    if stable is not None and stable_loaded:
        previous = registry.versions.get(stable)
        _repair(
            seq, deployment, registry, runtime, stable, previous.signature if previous else None
        )
    if gated and stable is not None and not stable_loaded:
        # A canary is compared with the stable version, which must be serving next to it.
        previous = registry.versions.get(stable)
        load(
            seq,
            deployment,
            version=stable,
            signature=previous.signature if previous else None,
            reason=f"stable version {stable} is not loaded: the canary is compared with it",
        )
        stable_loaded = True
    if gated and not in_progress:
        seq.add(
            K.PROMOTE,
            Address.deployment(name),
            S.UPDATE,
            t.PromotePayload(aliases={"canary": version}, clear=[]),
            before=t.Aliases(aliases=dict(registry.aliases)),
            reason=f"mark {version} as the canary: a rollout is in progress",
        )
    if gated:
        estimate = order.expand_rollout(
            seq, deployment, from_weight=weight, recheck_current=in_progress and weight > 0
        )
        requests = order.canary_requests(deployment, rate, from_weight=weight)
        outcome.estimate = estimate.model_copy(update={"canary_requests": requests})
    else:
        seq.add(
            K.SET_TRAFFIC,
            Address.traffic(name),
            S.CREATE if first else S.UPDATE,
            t.TrafficPayload(weights={version: 100}, shadow=None),
            before=traffic_before(runtime),
            reason="all traffic at once" if not first else "first deployment: all traffic",
        )
        outcome.estimate = t.Estimate(rollout_seconds=0.0, canary_requests=None)
    seq.add(
        K.PROMOTE,
        Address.deployment(name),
        S.CREATE if first else S.UPDATE,
        t.PromotePayload(aliases={"stable": version}, clear=["canary"]),
        before=t.Aliases(aliases=dict(registry.aliases)),
        reason=f"{version} becomes the stable version",
    )
    if stable and stable_loaded:
        keep = rollout.keep_previous
        seq.add(
            K.RETIRE,
            Address.version(name, stable),
            S.DELETE,
            t.RetirePayload(semver=stable, after_seconds=keep),
            reason=f"unload the previous version after {keep:g}s (kept for instant rollback)",
        )
    outcome.actions, outcome.rollback = seq.actions, seq.rollback
    outcome.change = t.ModelChange(
        name=name,
        symbol=S.CREATE if first else S.REPLACE,
        from_version=stable,
        to_version=version,
        strategy=_strategy(deployment, first),
        weights=[s.weight for s in rollout.steps] if gated else [100],
        shadow_percent=rollout.shadow.percent if gated and rollout.shadow else None,
        reason=_reason(deployment, stable, first, in_progress, weight),
    )
    return outcome


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


def _repair(
    seq: order.Sequence,
    deployment: spec.ModelDeployment,
    registry: state.RegistryModel,
    runtime: state.RuntimeModel | None,
    version: str,
    signature: spec.Signature | None = None,
) -> None:
    """A loaded version that serves other bytes than the registered ones: verify the stored
    artifact, then stage and reload it (integrity.py)."""
    found = integrity.mismatch(registry, runtime, version)
    if found is None:
        return
    verify(seq, deployment.name, version, found.registered)
    load(
        seq,
        deployment,
        version=version,
        signature=signature,
        reason=found.reason(),
        sha256=found.registered,
    )


def verify(seq: order.Sequence, name: str, version: str, sha256: str | None) -> None:
    seq.add(
        K.VERIFY,
        Address.version(name, version),
        S.READ,
        t.VerifyPayload(semver=version, sha256=sha256),
        reason="re-hash the stored artifact before it is served",
    )


def load(
    seq: order.Sequence,
    deployment: spec.ModelDeployment,
    *,
    reason: str,
    version: str | None = None,
    signature: spec.Signature | None = None,
    sha256: str | None = None,
) -> None:
    """Load with no traffic. With `sha256` (the registered digest), the reload of a version
    that serves other bytes: the settings carry the digest the engine must serve, so the
    engine replaces the version from the file staged again (an unchanged settings object
    would be a no-op for it)."""
    version = version or deployment.spec.model.version
    seq.add(
        K.LOAD,
        Address.version(deployment.name, version),
        S.CREATE if sha256 is None else S.REPLACE,
        t.LoadPayload(
            semver=version,
            settings=payloads.settings(deployment, signature, sha256=sha256),
            replicas=payloads.replicas(deployment),
        ),
        reason=reason,
    )


def retire_candidate(
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
            t.TrafficPayload(weights={stable: 100}, shadow=None),
            before=traffic_before(runtime),
            reason=f"weight of {candidate} to 0: {why}",
            tag="reset",
        )
        reset = True
    if candidate in runtime.loaded:
        seq.add(
            K.RETIRE,
            Address.version(seq.name, candidate),
            S.DELETE,
            t.RetirePayload(semver=candidate, after_seconds=0.0),
            reason=f"unload {candidate}: {why}",
            tag=candidate,
        )
    return reset


def traffic_before(runtime: state.RuntimeModel | None) -> t.TrafficPayload | None:
    if runtime is None or not (runtime.weights or runtime.shadow):
        return None
    return t.TrafficPayload(weights=dict(runtime.weights), shadow=runtime.shadow)
