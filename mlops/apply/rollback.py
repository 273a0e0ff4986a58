"""Rolling a candidate back: the steps the plan shows, journaled, each one to completion.

The steps are the plan's (`plan.rollback[model][anchor]`, what the reviewer approved and the
views print as "on failure"); for a candidate no plan describes (`mlops rollback` with no
run in progress) they come from the same pure function the planner uses (`plan.order.undo`),
fed with live state. Order matters: the candidate's weight goes to 0 first, confirmed by
every replica and recorded where a restarted runtime reads it (`rollback=True`), before it
is unloaded, so no request is ever routed to a version that is going away; then the aliases;
then the version is marked rejected (not when the metrics backend failed: it was not judged).

The rollback is journaled before its first step, and each step as it completes: a run killed
in the middle finishes it when it runs again (the executor does that first), or with
`mlops rollback NAME`. Steps are idempotent; transient errors are retried by the one policy
of `apply.retry`; a step that still fails stops with what is done, what is not, and the
runtime's own account of which replica did not confirm and what it holds.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from mlops import errors
from mlops.apply import handlers, journal, retry
from mlops.apply import hooks as hooks_
from mlops.apply import target as target_
from mlops.plan import order
from mlops.plan import types as t
from mlops.state import models as state

K = t.ActionKind
STEP_KINDS = (K.SET_TRAFFIC, K.RETIRE, K.PROMOTE)


class RollbackIncomplete(errors.MlopsError):
    """A step of a rollback failed for good: the message says what is done and what is not."""


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

    def record(self) -> dict[str, Any]:
        """The journal entry's data: enough to finish the rollback after a crash."""
        return {
            "model": self.model,
            "canary": self.canary,
            "stable": self.stable,
            "reason": self.reason,
            "reject": self.reject,
            "anchor": self.anchor,
            "steps": [step.model_dump(mode="json") for step in self.steps],
        }

    @classmethod
    def from_entry(cls, entry: journal.Entry) -> Rollback:
        data = entry.data
        try:
            return cls(
                model=str(data["model"]),
                canary=str(data["canary"]),
                stable=None if data.get("stable") is None else str(data["stable"]),
                reason=str(data.get("reason", "")),
                reject=bool(data.get("reject", True)),
                anchor=None if data.get("anchor") is None else str(data["anchor"]),
                steps=tuple(t.Action.model_validate(step) for step in data.get("steps", [])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise errors.MlopsError(
                f"the journal's rollback record (entry {entry.seq}) is damaged: {exc}"
            ) from None


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


def run(
    target: target_.Target,
    hooks: hooks_.Hook,
    rollback: Rollback,
    *,
    run_journal: journal.Journal | None = None,
    policy: retry.Policy | None = None,
) -> RollbackResult:
    """Run (or finish) `rollback`. Raises RollbackIncomplete when a step fails for good."""
    policy = policy or retry.Policy()
    model, canary = rollback.model, rollback.canary
    resumed = run_journal is not None and model in run_journal.rollbacks()
    if run_journal is not None and not resumed:
        run_journal.append(journal.Event.ROLLBACK, rollback.anchor, **rollback.record())
    hooks.on_rollback(model, canary, rollback.reason)
    if resumed:
        hooks.on_message(f"{model}: finishing the rollback of {canary} begun earlier")
    done = set(run_journal.completed()) if run_journal is not None else set()
    weights: dict[str, int] = {}
    generation = 0
    for step in rollback.steps:
        if step.id in done:
            continue
        if step.kind not in STEP_KINDS:
            raise errors.PlanError(f"{step.id}: a rollback cannot {step.kind}")
        if run_journal is not None:
            run_journal.append(journal.Event.INTENT, step.id, kind=step.kind.value)
        try:
            moved = policy.call(partial(_step, target, hooks, model, step), step.id, hooks)
        except errors.MlopsError as exc:
            raise RollbackIncomplete(_incomplete(rollback, step, exc, done)) from exc
        if moved is not None:
            weights, generation = moved
        if run_journal is not None:
            run_journal.append(journal.Event.DONE, step.id, outcome="done")
        done.add(step.id)
    if rollback.reject:
        try:
            policy.call(
                lambda: target.registry.mark_rejected(model, canary, rollback.reason),
                f"{model}: reject {canary}",
                hooks,
            )
        except errors.MlopsError as exc:
            raise RollbackIncomplete(
                f"rollback of {model} {canary}: every step is done but marking it rejected "
                f"failed: {exc.message}; re-run to finish"
            ) from exc
    policy.call(lambda: target.record_applied(model), f"{model}: record", hooks)
    if run_journal is not None:
        run_journal.append(journal.Event.ROLLBACK_DONE, rollback.anchor, model=model)
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
    after = step.after
    runtime = target.runtime
    if isinstance(after, t.TrafficPayload):
        weights = dict(after.weights)
        running = runtime.reachable()
        generation = runtime.set_traffic(model, weights, after.shadow, rollback=True)
        hooks.on_weight(model, weights, generation)
        if not running:
            hooks.on_message(
                f"{model}: the engine is not running: nothing serves now, and it starts with "
                f"{_what(step)} (recorded before any worker was asked)"
            )
        target.record_applied(model)
        return weights, generation
    if isinstance(after, t.RetirePayload):
        semver = after.semver
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
    if isinstance(after, t.PromotePayload):
        handlers.set_aliases(target, model, after)
        return None
    raise errors.PlanError(f"{step.id}: a rollback cannot {step.kind}")


def _incomplete(
    rollback: Rollback, failed: t.Action, exc: errors.MlopsError, done: Collection[str]
) -> str:
    finished = [s for s in rollback.steps if s.id in done]
    left = [s for s in rollback.steps if s.id not in done and s.id != failed.id]
    text = (
        f"the rollback of {rollback.model} {rollback.canary} did not finish: "
        f"{_what(failed)} failed: {exc.message}. "
        f"Done: {_steps(finished)}; not done: {_steps([failed, *left])}"
    )
    if rollback.reject:
        text += f"; {rollback.canary} is not marked rejected yet"
    return text + (
        f". Re-run the same apply, or `mlops rollback {rollback.model}`, to finish it "
        "(it is journaled)"
    )


def _steps(steps: list[t.Action]) -> str:
    return "; ".join(_what(s) for s in steps) or "nothing"


def _what(step: t.Action) -> str:
    after = step.after
    if isinstance(after, t.TrafficPayload):
        weights = after.weights
        return "traffic " + (" / ".join(f"{v} {w}%" for v, w in weights.items()) or "default")
    if isinstance(after, t.RetirePayload):
        return f"unload {after.semver}"
    if isinstance(after, t.PromotePayload):
        parts = [f"{a} = {v}" for a, v in after.aliases.items()]
        parts += [f"clear {a}" for a in after.clear]
        return "aliases " + (", ".join(parts) or "unchanged")
    return str(step.kind)


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
