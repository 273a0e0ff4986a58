"""The shared engine's worker count (local target), and the plan step that changes it. Pure.

On the local target one engine (one set of worker processes) serves every model, so a model's
`serving.replicas` is not its own: the engine runs one count for all of them. The count moves
as little as possible: the running count when it lies within every model's range (from the
highest `min` to the lowest `max`), else the nearest end of that range. When the ranges do not
overlap, the highest `min` wins and the plan warns about each model that then runs more
workers than its `max`. Models the engine serves without a spec in this plan (kept, not
deleted) constrain nothing but are listed, since they run on the same workers.

Starting an engine that is not running is not a step: apply starts it with this count when
it first needs it (every load carries the count). Changing the count of a running engine is
one: `scale_engine`, first in the plan, with the count before and after, every model on the
engine and what changes for each. Apply does exactly that, live and without losing a request
(docs/engine.md); nothing else ever restarts or rescales the engine.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from mlops.core import Address
from mlops.plan import result
from mlops.plan import types as t
from mlops.spec import models as spec
from mlops.state import models as state

K = t.ActionKind


def engine_replicas(ranges: Mapping[str, spec.Replicas], running: int) -> int | None:
    """The engine's worker count for models with these `replicas` ranges, given the count it
    runs now (0: not running). None when no model declares a range (nothing to decide)."""
    if not ranges:
        return None
    low = max(r.min for r in ranges.values())
    high = min(r.max for r in ranges.values())
    if low > high:
        return low
    if running == 0:
        return low
    return min(max(running, low), high)


def plan_engine(
    items: Sequence[result.Desired],
    engine: state.EngineState | None,
    deleted: Collection[str],
) -> tuple[int | None, t.Action | None, list[str]]:
    """(the engine's count for this plan, the scale_engine step if the running count changes,
    warnings). (None, None, []) where models do not share an engine (kubernetes)."""
    if engine is None:
        return None, None, []
    ranges = {
        item.deployment.name: item.deployment.spec.serving.replicas
        for item in items
        if item.deployment.name not in deleted
    }
    count = engine_replicas(ranges, engine.replicas)
    if count is None:
        return None, None, []
    warnings = [
        f"{name}: replicas.max is {bounds.max} but the engine it shares runs {count} workers "
        f"(the highest replicas.min of the models on it); it is served by all of them"
        for name, bounds in sorted(ranges.items())
        if bounds.max < count
    ]
    if engine.replicas == 0 or engine.replicas == count:
        return count, None, warnings
    return count, _scale(engine, ranges, count, deleted), warnings


def _scale(
    engine: state.EngineState,
    ranges: Mapping[str, spec.Replicas],
    count: int,
    deleted: Collection[str],
) -> t.Action:
    running = engine.replicas
    names = sorted((set(engine.models) | set(ranges)) - set(deleted))
    models = [
        t.EngineModel(
            name=name,
            before=running if name in engine.models else 0,
            after=count,
            min=ranges[name].min if name in ranges else None,
            max=ranges[name].max if name in ranges else None,
        )
        for name in names
    ]
    # The step belongs to the model that needs the change: the one whose range the running
    # count is outside of (the highest min when growing, the lowest max when shrinking).
    if count > running:
        owner = max(sorted(ranges), key=lambda n: ranges[n].min)
        why = f"{owner} needs at least {ranges[owner].min} workers (replicas.min)"
    else:
        owner = min(sorted(ranges), key=lambda n: ranges[n].max)
        why = f"{owner} allows at most {ranges[owner].max} workers (replicas.max)"
    others = [m.name for m in models if m.name != owner]
    shared = f"; shared with {', '.join(others)}" if others else ""
    return t.Action(
        id=f"{owner}/00-{K.SCALE_ENGINE.value}",
        address=Address.engine(owner),
        model=owner,
        kind=K.SCALE_ENGINE,
        symbol=t.ChangeSymbol.UPDATE,
        before=t.EngineBefore(replicas=running),
        after=t.ScaleEnginePayload(replicas=count, models=models),
        reason=f"the engine's workers {running} -> {count}: {why}{shared}",
    )


def with_engine_replicas(actions: Sequence[t.Action], count: int) -> list[t.Action]:
    """`actions` with every load, conformance test and in-place update carrying the engine's
    count (the workers each version is served by, and the count an engine is started with)."""
    changed: list[t.Action] = []
    for action in actions:
        after = action.after
        if (
            isinstance(after, t.LoadPayload | t.UpdateConfigPayload | t.ConformancePayload)
            and after.replicas != count
        ):
            action = action.model_copy(
                update={"after": after.model_copy(update={"replicas": count})}
            )
        changed.append(action)
    return changed
