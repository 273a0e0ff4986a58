"""Rolling a candidate back: traffic first, then the runtime, then the registry.

Order matters: the canary's weight goes to 0 and that is confirmed on every replica (the
runtime reads the routing generation back) before anything is unloaded, so no request is
ever routed to a version that is going away. Each step is idempotent, so an interrupted
rollback is finished by running it again.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlops import errors
from mlops.apply import hooks as hooks_
from mlops.apply import target as target_
from mlops.state import models as state


@dataclass(frozen=True)
class RollbackResult:
    model: str
    canary: str
    stable: str | None
    weights: dict[str, int]
    generation: int
    rejected: bool
    reason: str


def weights_without(
    weights: dict[str, int], canary: str, stable: str | None, loaded: set[str]
) -> dict[str, int]:
    """The weight table once the canary is gone: everything to the stable version when it is
    loaded, else the other versions keep their share, scaled back up to 100."""
    if stable is not None and stable in loaded:
        return {stable: 100}
    rest = {v: w for v, w in weights.items() if v != canary and w > 0}
    total = sum(rest.values())
    if not total:
        return {}
    scaled = {v: w * 100 // total for v, w in rest.items()}
    first = sorted(scaled)[0]
    scaled[first] += 100 - sum(scaled.values())
    return scaled


def roll_back(
    target: target_.Target,
    hooks: hooks_.Hook,
    model: str,
    canary: str,
    stable: str | None,
    reason: str,
    *,
    reject: bool = True,
) -> RollbackResult:
    """Undo `canary`: weight 0 (verified), unload, aliases back to `stable`, mark rejected."""
    hooks.on_rollback(model, canary, reason)
    runtime = target.runtime
    generation = 0
    weights: dict[str, int] = {}
    if runtime.reachable():
        live = runtime.refresh([model]).get(model) or state.RuntimeModel(name=model)
        weights = dict(live.weights)
        shadowing = live.shadow is not None and live.shadow.version == canary
        if live.weights.get(canary, 0) > 0 or shadowing:
            weights = weights_without(live.weights, canary, stable, set(live.loaded))
            generation = runtime.set_traffic(model, weights, None, rollback=True)
            _verify_no_traffic(target, model, canary, generation)
            hooks.on_weight(model, weights, generation)
            target.record_applied(model)
        if canary in live.loaded:
            runtime.unload(model, canary)
    else:
        # Nothing answers: the rollback still reaches the state a starting engine serves.
        if stable is not None:
            weights = {stable: 100}
            generation = runtime.set_traffic(model, weights, None, rollback=True)
        runtime.unload(model, canary)
        hooks.on_message(
            f"{model}: the engine is not running: {canary} is out of the state it starts from"
        )
    registry = target.registry
    aliases = (registry.refresh([model]).get(model) or state.RegistryModel(name=model)).aliases
    if stable is not None and aliases.get("stable") != stable:
        registry.set_alias(model, "stable", stable)
    if aliases.get("canary") == canary:
        registry.delete_alias(model, "canary")
    if reject:
        registry.mark_rejected(model, canary, reason)
    target.record_applied(model)
    return RollbackResult(model, canary, stable, weights, generation, reject, reason)


def _verify_no_traffic(target: target_.Target, model: str, canary: str, generation: int) -> None:
    live = target.runtime.refresh([model]).get(model)
    if live is None:
        return
    if live.weights.get(canary, 0) > 0 or live.generation < generation:
        raise errors.TransientError(
            f"{model}: routing generation {generation} without {canary} is not in force on "
            f"every replica (read back generation {live.generation}, weights {live.weights})"
        )
