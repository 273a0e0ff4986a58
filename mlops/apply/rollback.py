"""Rolling a candidate back: the steps the plan shows, journaled, each one to completion.

The steps are the plan's (`plan.rollback[model][anchor]`, what the reviewer approved and the
views print as "on failure"); for a candidate no plan describes (`mlops rollback` with no
run in progress) they come from the same pure function the planner uses (`plan.order.undo`),
fed with live state. Order matters: the candidate's weight goes to 0 first, confirmed by
every replica and recorded where a restarted runtime reads it (`rollback=True`), before it
is unloaded, so no request is ever routed to a version that is going away; then the aliases;
then the version is marked rejected (not when the metrics backend failed: it was not judged).
Every step is idempotent, so running the rollback again finishes an interrupted one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mlops import errors
from mlops.apply import handlers
from mlops.apply import hooks as hooks_
from mlops.apply import target as target_
from mlops.plan import order
from mlops.plan import types as t
from mlops.state import models as state

K = t.ActionKind
STEP_KINDS = (K.SET_TRAFFIC, K.RETIRE, K.PROMOTE)


@dataclass(frozen=True)
class Rollback:
    """One rollback to run: which candidate, why, and its steps in order."""

    model: str
    canary: str
    stable: str | None
    reason: str
    reject: bool
    anchor: str | None  # the plan action at which the rollout stopped (None: not in a plan)
    steps: tuple[t.Action, ...]


@dataclass(frozen=True)
class RollbackResult:
    model: str
    canary: str
    stable: str | None
    weights: dict[str, int]
    generation: int
    rejected: bool
    reason: str
    steps: tuple[t.Action, ...] = ()  # what it ran (the plan's steps for where it stopped)


def planned(
    plan: t.Plan,
    model: str,
    anchor: str,
    canary: str,
    stable: str | None,
    reason: str,
    *,
    reject: bool = True,
) -> Rollback:
    """The rollback the plan shows for a rollout that stopped at action `anchor`."""
    steps = tuple(plan.rollback.get(model, {}).get(anchor, []))
    return Rollback(model, canary, stable, reason, reject, anchor, steps)


def from_live(
    target: target_.Target,
    model: str,
    canary: str,
    stable: str | None,
    reason: str,
    *,
    reject: bool = True,
) -> Rollback:
    """A rollback no plan describes, from live state through the planner's own `undo`. With
    the runtime down nothing can be read, so it undoes everything (each step is idempotent)."""
    runtime = target.runtime
    live = runtime.refresh([model]).get(model) if runtime.reachable() else None
    if live is None and runtime.reachable():
        live = state.RuntimeModel(name=model)
    registry = target.registry.refresh([model]).get(model)
    traffic = live is None or (
        live.weights.get(canary, 0) > 0
        or (live.shadow is not None and live.shadow.version == canary)
    )
    steps = order.undo(
        model,
        canary,
        stable,
        traffic=traffic,
        loaded=live is None or canary in live.loaded,
        canary_alias=registry is not None and registry.aliases.get("canary") == canary,
        anchor=f"{model}/live",
        reason=f"roll back {canary} ({reason})",
    )
    return Rollback(model, canary, stable, reason, reject, None, tuple(steps))


def run(target: target_.Target, hooks: hooks_.Hook, rollback: Rollback) -> RollbackResult:
    """Run `rollback`: its steps in order, then the rejection."""
    model, canary = rollback.model, rollback.canary
    hooks.on_rollback(model, canary, rollback.reason)
    weights: dict[str, int] = {}
    generation = 0
    for step in rollback.steps:
        if step.kind not in STEP_KINDS:
            raise errors.PlanError(f"{step.id}: a rollback cannot {step.kind}")
        moved = _step(target, hooks, model, step)
        if moved is not None:
            weights, generation = moved
    if rollback.reject:
        target.registry.mark_rejected(model, canary, rollback.reason)
    target.record_applied(model)
    return RollbackResult(
        model,
        canary,
        rollback.stable,
        weights,
        generation,
        rollback.reject,
        rollback.reason,
        rollback.steps,
    )


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
    """Undo `canary` from live state, unjournaled (kept for callers outside a run)."""
    return run(target, hooks, from_live(target, model, canary, stable, reason, reject=reject))


def _step(
    target: target_.Target, hooks: hooks_.Hook, model: str, step: t.Action
) -> tuple[dict[str, int], int] | None:
    after = step.after or {}
    runtime = target.runtime
    if step.kind is K.SET_TRAFFIC:
        weights = {str(v): int(w) for v, w in dict(after.get("weights") or {}).items()}
        raw = after.get("shadow")
        shadow = state.ShadowRoute.model_validate(raw) if raw else None
        running = runtime.reachable()
        generation = runtime.set_traffic(model, weights, shadow, rollback=True)
        hooks.on_weight(model, weights, generation)
        if not running:
            hooks.on_message(
                f"{model}: the engine is not running: nothing serves now, and it starts with "
                f"{_what(step)} (recorded before any worker was asked)"
            )
        target.record_applied(model)
        return weights, generation
    if step.kind is K.RETIRE:
        semver = str(after["semver"])
        live = runtime.refresh([model]).get(model) if runtime.reachable() else None
        if live is not None and (
            live.weights.get(semver, 0) > 0
            or (live.shadow is not None and live.shadow.version == semver)
        ):
            raise errors.PermanentError(
                f"{model}@{semver} still receives traffic ({live.weights}); not unloading it"
            )
        runtime.unload(model, semver)
        target.record_applied(model)
        return None
    handlers.set_aliases(target, model, after)
    return None


def _what(step: t.Action) -> str:
    after = step.after or {}
    if step.kind is K.SET_TRAFFIC:
        weights = dict(after.get("weights") or {})
        return "traffic " + (" / ".join(f"{v} {w}%" for v, w in weights.items()) or "default")
    if step.kind is K.RETIRE:
        return f"unload {after.get('semver')}"
    parts = [f"{a} = {v}" for a, v in dict(after.get("aliases") or {}).items()]
    parts += [f"clear {a}" for a in after.get("clear") or []]
    return "aliases " + (", ".join(parts) or "unchanged")


def weights_without(
    weights: Mapping[str, int], canary: str, stable: str | None, loaded: set[str]
) -> dict[str, int]:
    """The weight table once the canary is gone: everything to the stable version when it is
    loaded, else the other versions keep their share, scaled back up to 100. (Apply no longer
    uses it: a rollback routes to what the plan says; kept for existing callers.)"""
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
