"""One locked apply session: start or resume a run, promote a paused rollout, roll one back.

`mlops.api` builds the providers and calls these; everything here holds the workspace lock
for its whole duration and journals what it does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mlops import core, errors
from mlops.apply import executor, journal, lock, recorders
from mlops.apply import hooks as hooks_
from mlops.apply import rollback as rollback_
from mlops.apply import target as target_
from mlops.apply.handlers import who
from mlops.plan import planfile
from mlops.plan import types as t
from mlops.state import models as state


def _hooks(
    run: journal.Journal, target: target_.Target, extra: Sequence[hooks_.Hook]
) -> hooks_.Hooks:
    # The journal listens first: nothing is shown or recorded that the journal does not have.
    return hooks_.Hooks(
        [
            recorders.JournalHook(run),
            recorders.RolloutRecorder(target.ws.state_dir, run.run_id),
            *extra,
        ]
    )


def open_run(state_dir_run: journal.Journal | None) -> journal.Journal | None:
    return state_dir_run if state_dir_run is not None and not state_dir_run.finished else None


def apply_plan(
    target: target_.Target,
    plan: t.Plan,
    *,
    source: str | None,
    live: Callable[[], state.LiveState],
    lock_timeout: float = 0.0,
    listeners: Sequence[hooks_.Hook] = (),
) -> executor.Result:
    """Execute `plan`; resume it when the workspace's open run is this very plan."""
    if plan.errors:
        raise errors.PlanError(
            "the plan has errors and cannot be applied: " + "; ".join(plan.errors)
        )
    state_dir = target.ws.ensure_state_dir()
    with lock.acquire(state_dir, plan=source, timeout=lock_timeout):
        latest = journal.Journal.current(state_dir)
        if _ran_to_the_end(latest, plan):
            assert latest is not None
            # Killed after its outcome was journaled: the same plan again reports that outcome
            # (a re-run after a crash cannot tell whether the crash came before or after it).
            return _recorded(latest, plan)
        current = open_run(latest)
        resumed = current is not None and current.plan_digest == journal.plan_digest(plan)
        if resumed:
            assert current is not None
            # Live state moved because of this very run, so the fingerprint cannot match;
            # every action checks live state itself before acting.
            run = current
        else:
            if current is not None and current.unfinished_rollbacks():
                # A begun rollback finishes before anything else changes (the plan is then
                # usually stale: the rollback moved live state).
                executor.Executor(
                    target, current.plan(), current, _hooks(current, target, listeners)
                ).finish_rollbacks()
            planfile.check_fresh(plan, live())  # raises "plan is stale" before any change
            if not plan.actions:
                return executor.Result(run_id="", outcome=executor.Outcome.APPLIED)
            if current is not None:
                current.append(journal.Event.RUN_END, outcome="superseded")
            run = journal.Journal.create(state_dir, plan, source)
        hooks = _hooks(run, target, listeners)
        return executor.Executor(target, plan, run, hooks).execute(resumed=resumed)


def _ran_to_the_end(latest: journal.Journal | None, plan: t.Plan) -> bool:
    finished = (executor.Outcome.APPLIED, executor.Outcome.ROLLED_BACK, executor.Outcome.ABORTED)
    return (
        latest is not None
        and latest.finished
        and latest.outcome() in {o.value for o in finished}
        and latest.plan_digest == journal.plan_digest(plan)
    )


def _recorded(run: journal.Journal, plan: t.Plan) -> executor.Result:
    """The result a finished run of `plan` journaled, per model."""
    models = {core.Address(a.address).model: executor.Outcome.APPLIED for a in plan.actions}
    result = executor.Result(run.run_id, executor.Outcome(str(run.outcome())), models)
    for entry in run.entries:
        if entry.event is journal.Event.MODEL_STOPPED:
            model = str(entry.data.get("model"))
            result.models[model] = executor.Outcome(str(entry.data.get("outcome")))
            result.reasons[model] = str(entry.data.get("reason", ""))
    return result


def _paused(current: journal.Journal | None, model: str) -> tuple[journal.Journal, str]:
    """The open run and the checkpoint at which `model` is paused."""
    run = open_run(current)
    if run is not None:
        stops = [
            e
            for e in run.entries
            if e.event is journal.Event.MODEL_STOPPED and e.data.get("model") == model
        ]
        if stops and stops[-1].data.get("outcome") == executor.Outcome.PAUSED.value:
            for entry in reversed(run.entries):
                if (
                    entry.event is journal.Event.PAUSED
                    and entry.data.get("model") == model
                    and entry.action
                ):
                    return run, entry.action
    raise errors.UsageError(f"no paused rollout of {model!r} in this workspace")


def promote(
    target: target_.Target,
    model: str,
    *,
    lock_timeout: float = 0.0,
    listeners: Sequence[hooks_.Hook] = (),
) -> executor.Result:
    """A human declares the paused checkpoint passed; the rollout continues from there."""
    state_dir = target.ws.ensure_state_dir()
    with lock.acquire(state_dir, operation=f"promote {model}", timeout=lock_timeout):
        run, checkpoint = _paused(journal.Journal.current(state_dir), model)
        hooks = _hooks(run, target, listeners)
        hooks.on_decision(model, f"promote: checkpoint {checkpoint} treated as passed", who())
        return executor.Executor(target, run.plan(), run, hooks).execute(
            resumed=True, passed={checkpoint}, only=model
        )


def roll_back(
    target: target_.Target,
    model: str,
    *,
    lock_timeout: float = 0.0,
    listeners: Sequence[hooks_.Hook] = (),
) -> rollback_.RollbackResult:
    """Roll the model's candidate back now (a paused or in-progress rollout, or a canary
    that the registry and the routing table show)."""
    state_dir = target.ws.ensure_state_dir()
    with lock.acquire(state_dir, operation=f"rollback {model}", timeout=lock_timeout):
        run = open_run(journal.Journal.current(state_dir))
        begun = run.rollbacks().get(model) if run is not None else None
        if run is not None and begun is not None and not begun[1]:
            # A rollback of this model began and was interrupted: finish that one.
            chosen = rollback_.Rollback.from_entry(begun[0])
        else:
            reason = f"rolled back by {who()}"
            chosen = _in_run(run, model, reason) or _from_live(target, model, reason)
        reason = chosen.reason
        if run is None:
            run = journal.Journal.create(state_dir, _empty_plan(target), f"rollback {model}")
        hooks = _hooks(run, target, listeners)
        hooks.on_decision(model, "rollback", who())
        result = rollback_.run(target, hooks, chosen, run_journal=run)
        run.append(
            journal.Event.MODEL_STOPPED,
            model=model,
            outcome=executor.Outcome.ROLLED_BACK.value,
            reason=reason,
        )
        if _all_stopped(run):
            hooks.on_run_end(executor.Outcome.ROLLED_BACK.value)
        return result


def _in_run(run: journal.Journal | None, model: str, reason: str) -> rollback_.Rollback | None:
    """The plan's rollback from the step at which the open run stopped `model`'s rollout
    (the one the reviewer approved); None when the run has no rollout of it in progress."""
    if run is None:
        return None
    plan = run.plan()
    change = plan.models.get(model)
    if change is None or change.to_version is None:
        return None
    for entry in run.entries:
        stopped = entry.event is journal.Event.MODEL_STOPPED and entry.data.get("model") == model
        if stopped and entry.data.get("outcome") != executor.Outcome.PAUSED.value:
            return None
    ours = {a.id for a in plan.actions if core.Address(a.address).model == model}
    started = [
        e.action for e in run.entries if e.event is journal.Event.INTENT and e.action in ours
    ]
    if not started or started[-1] not in plan.rollback.get(model, {}):
        return None
    return rollback_.planned(
        plan, model, started[-1], change.to_version, change.from_version, reason
    )


def _from_live(target: target_.Target, model: str, reason: str) -> rollback_.Rollback:
    """A candidate no run describes: found in the registry or the routing table, undone by
    the planner's own `undo` over live state."""
    canary, stable = _candidate(target, model)
    return rollback_.from_live(target, model, canary, stable, reason)


def _candidate(target: target_.Target, model: str) -> tuple[str, str | None]:
    registry = target.registry.refresh([model]).get(model)
    stable = registry.stable if registry else None
    if registry is not None and registry.canary:
        return registry.canary, stable
    if target.runtime.reachable():
        live = target.runtime.refresh([model]).get(model)
        if live is not None:
            others = sorted(v for v, w in live.weights.items() if w > 0 and v != stable)
            if live.shadow is not None and live.shadow.version != stable:
                others.append(live.shadow.version)
            if others:
                return others[0], stable
    raise errors.UsageError(f"{model!r} has no rollout to roll back (no canary version)")


def _all_stopped(run: journal.Journal) -> bool:
    """True when no model of the run's plan has actions left to do."""
    stopped = {
        str(e.data.get("model"))
        for e in run.entries
        if e.event is journal.Event.MODEL_STOPPED
        and e.data.get("outcome") != executor.Outcome.PAUSED.value
    }
    done = run.completed()
    return all(a.id in done or core.Address(a.address).model in stopped for a in run.plan().actions)


def _empty_plan(target: target_.Target) -> t.Plan:
    return t.Plan(
        created_at=journal.now_iso(),
        workspace=str(target.ws.root),
        spec_digest="",
        state_fingerprint="",
    )
