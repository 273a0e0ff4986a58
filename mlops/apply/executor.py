"""Walk a saved plan's actions in order, journaled, resumable, one model's failure contained.

Dispatch is on `kind` and reads `after` only (never `reason`). Every handler is idempotent
against live state, so re-running an action that already took effect is a no-op; resuming
after a crash skips what the journal records as done and re-runs the step that was in
flight. A checkpoint that fails rolls its model back (the plan's own rollback for that
step) and the rest of that model's actions are skipped; other models in the plan carry on.
A rollback that a crash interrupted is finished first when the run resumes. Transient
provider errors are retried here, by one policy (`apply.retry`), and nowhere else.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from enum import StrEnum

from mlops import core, errors
from mlops.apply import checkpoints, handlers, journal, retry
from mlops.apply import hooks as hooks_
from mlops.apply import rollback as rollback_
from mlops.apply import target as target_
from mlops.gates import evaluate as gates
from mlops.plan import types as t


class Outcome(StrEnum):
    APPLIED = "applied"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"  # metrics backend failed: rolled back, version not rejected
    PAUSED = "paused"


@dataclass
class Result:
    run_id: str
    outcome: Outcome = Outcome.APPLIED
    models: dict[str, Outcome] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)


class Executor:
    def __init__(
        self,
        target: target_.Target,
        plan: t.Plan,
        run: journal.Journal,
        hooks: hooks_.Hook,
        *,
        sleep: Callable[[float], None] | None = None,
        policy: retry.Policy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self.plan = plan
        self.run = run
        self.hooks = hooks
        self.handlers = handlers.Handlers(target, plan, run, hooks, sleep=sleep)
        self.retry = policy or (retry.Policy(sleep=sleep) if sleep else retry.Policy())
        self.result = Result(run.run_id)
        self.clock = clock  # the holds' clock (with `sleep`, virtual in tests)

    def execute(
        self, *, resumed: bool, passed: Collection[str] = (), only: str | None = None
    ) -> Result:
        """Run every action not yet done. `passed`: checkpoint ids a human declared passed.
        `only`: resume just this model (others that are paused stay paused)."""
        self.hooks.on_run_start(self.run.run_id, self.plan, resumed)
        blocked = self._blocked_from_journal(only)
        blocked.update(self.finish_rollbacks())
        done = self.run.completed()
        pending = [a for a in self.plan.actions if a.id not in done]
        if any(a.kind is t.ActionKind.CHECKPOINT_GATE for a in pending) and (
            self.target.runtime.reachable()
        ):
            # A metrics backend started now (Prometheus) has scraped for the whole of
            # registration and conformance by the first hold, so its first windows hold data.
            self.target.metrics()
        for action in self.plan.actions:
            model = core.Address(action.address).model
            if action.id in done:
                continue
            if model in blocked:
                self.hooks.on_action_end(action, "skipped", f"{model} is {blocked[model]}")
                continue
            missing = [d for d in action.depends_on if d not in done]
            if missing:
                raise errors.PlanError(
                    f"{action.id} depends on {', '.join(missing)}, which has not run: "
                    "the plan's actions are out of order"
                )
            if action.kind is t.ActionKind.SET_TRAFFIC and self._gated(model):
                # Start the metrics backend (e.g. Prometheus) before traffic moves, so it has
                # scraped the engine a few times by the first measurement.
                self.target.metrics()
            self.hooks.on_action_start(action)
            try:
                outcome = self._one(action, passed)
            except rollback_.RollbackIncomplete as exc:
                self.hooks.on_action_end(action, "failed", exc.message)
                raise errors.MlopsError(
                    f"{action.id}: {exc.message} (run {self.run.run_id})",
                    exit_code=exc.exit_code,
                ) from exc
            except errors.MlopsError as exc:
                self.hooks.on_action_end(action, "failed", exc.message)
                raise errors.MlopsError(
                    f"{action.id} failed: {exc.message} "
                    f"(run {self.run.run_id}; "
                    f"{_advice(exc, action.kind, model, served=self._served(model, done))})",
                    exit_code=exc.exit_code,
                ) from exc
            except Exception as exc:
                # A bug or an unexpected client error: journal it, then let the CLI report it.
                self.hooks.on_action_end(action, "failed", f"{type(exc).__name__}: {exc}")
                raise
            if outcome is None:
                self.hooks.on_action_end(action, "done")
                done.add(action.id)
            else:
                blocked[model] = outcome
                self._stop(model, outcome, self.result.reasons.get(model, ""))
        return self._finish(blocked)

    def _served(self, model: str, done: Collection[str]) -> bool:
        """Whether a done step of this run loaded or routed `model`."""
        return any(
            a.id in done
            and a.kind not in _BEFORE_SERVING
            and core.Address(a.address).model == model
            for a in self.plan.actions
        )

    def _gated(self, model: str) -> bool:
        return any(
            a.kind is t.ActionKind.CHECKPOINT_GATE and core.Address(a.address).model == model
            for a in self.plan.actions
        )

    def _one(self, action: t.Action, passed: Collection[str]) -> Outcome | None:
        """Run one action; an Outcome means its model stops here (rolled back or paused)."""
        model = core.Address(action.address).model
        if not isinstance(action.after, t.CheckpointPayload):
            try:
                self.retry.call(lambda: self.handlers.dispatch(action), action.id, self.hooks)
            except handlers.Rejected as refused:
                # A failed check before traffic: the version never receives any.
                self.roll_back_at(action, refused.semver, refused.stable, refused.reason)
                return Outcome.ROLLED_BACK
            return None
        point = checkpoints.Checkpoint.from_action(action.id, model, action.after)
        if action.id in passed:
            self.hooks.on_decision(model, f"checkpoint {action.id} passed", handlers.who())
            return None
        self.retry.call(lambda: self.handlers.check_live_weight(point), action.id, self.hooks)
        result = checkpoints.hold(
            point, self.target.metrics(), self.hooks, clock=self.clock, sleep=self.handlers.sleep
        )
        if result.decision is gates.Decision.PROMOTE:
            return None
        if result.decision is gates.Decision.PAUSE:
            self.hooks.on_pause(model, action.id, result.reason)
            self.hooks.on_action_end(action, "skipped", "paused: " + result.reason)
            self.result.reasons[model] = result.reason
            return Outcome.PAUSED
        reject = result.decision is gates.Decision.ROLLBACK
        self.roll_back_at(action, point.canary, point.stable, result.reason, reject=reject)
        return Outcome.ROLLED_BACK if reject else Outcome.ABORTED

    def roll_back_at(
        self,
        action: t.Action,
        canary: str,
        stable: str | None,
        reason: str,
        *,
        reject: bool = True,
    ) -> rollback_.RollbackResult:
        """The rollout stops at `action` (a check or a gate failed): run the rollback the plan
        shows for that step, nothing else."""
        model = core.Address(action.address).model
        planned = rollback_.planned(
            self.plan, model, action.id, canary, stable, reason, reject=reject
        )
        done = rollback_.run(
            self.target, self.hooks, planned, run_journal=self.run, policy=self.retry
        )
        self.hooks.on_action_end(action, "skipped", "rolled back: " + reason)
        self.result.reasons[model] = reason
        return done

    def finish_rollbacks(self) -> dict[str, Outcome]:
        """Finish every rollback this run began and a crash interrupted (a begun rollback
        always finishes before anything else runs); their models stop here."""
        stopped: dict[str, Outcome] = {}
        for entry in self.run.unfinished_rollbacks():
            begun = rollback_.Rollback.from_entry(entry)
            try:
                rollback_.run(
                    self.target, self.hooks, begun, run_journal=self.run, policy=self.retry
                )
            except rollback_.RollbackIncomplete as exc:
                raise errors.MlopsError(
                    f"{exc.message} (run {self.run.run_id})", exit_code=exc.exit_code
                ) from exc
            outcome = Outcome.ROLLED_BACK if begun.reject else Outcome.ABORTED
            self._stop(begun.model, outcome, begun.reason)
            stopped[begun.model] = outcome
        return stopped

    def _stop(self, model: str, outcome: Outcome, reason: str) -> None:
        self.run.append(
            journal.Event.MODEL_STOPPED, model=model, outcome=outcome.value, reason=reason
        )
        self.result.reasons[model] = reason

    def _blocked_from_journal(self, only: str | None) -> dict[str, Outcome]:
        """Models this run rolled back stay stopped. Paused ones resume on a plain re-run, or
        when they are the one `promote` names."""
        blocked: dict[str, Outcome] = {}
        for model, (begun, ended) in self.run.rollbacks().items():
            if ended:  # finished, but the run died before it recorded the model as stopped
                reject = bool(begun.data.get("reject", True))
                blocked[model] = Outcome.ROLLED_BACK if reject else Outcome.ABORTED
                self.result.reasons[model] = str(begun.data.get("reason", ""))
        for entry in self.run.entries:
            if entry.event is journal.Event.MODEL_STOPPED:
                model, outcome = str(entry.data["model"]), Outcome(entry.data["outcome"])
                if outcome is not Outcome.PAUSED or (only is not None and model != only):
                    blocked[model] = outcome
                self.result.reasons[model] = str(entry.data.get("reason", ""))
        return blocked

    def _finish(self, blocked: dict[str, Outcome]) -> Result:
        models = {core.Address(a.address).model: Outcome.APPLIED for a in self.plan.actions}
        models.update(blocked)
        self.result.models = models
        for outcome in (Outcome.ROLLED_BACK, Outcome.ABORTED, Outcome.PAUSED):
            if outcome in models.values():
                self.result.outcome = outcome
                break
        if self.result.outcome is not Outcome.PAUSED:
            # A paused run stays open: `mlops promote` resumes it from the journal.
            self.hooks.on_run_end(self.result.outcome.value)
        return self.result


def _advice(exc: errors.MlopsError, kind: t.ActionKind, model: str, *, served: bool) -> str:
    """What to do next. A permanent error (a bad artifact, a version conflict) fails the same
    way on every re-run, so it is never advertised as resumable. `served`: this run has done
    a step for `model` that loads or routes it; until then there is nothing to roll back."""
    permanent = isinstance(exc, errors.PermanentError)
    if permanent and kind is t.ActionKind.REGISTER:
        return "nothing was registered: fix the cause, then plan again"
    if not served and kind in _BEFORE_SERVING:
        untouched = f"this run has not loaded or routed {model}"
        if permanent:
            return f"{untouched}: fix the cause, then plan again"
        return f"re-run the same apply to resume ({untouched})"
    if permanent:
        return f"retrying will not help: fix the cause and plan again, or `mlops rollback {model}`"
    return f"re-run the same apply to resume, or `mlops rollback {model}`"


# Steps that neither load nor route a version.
_BEFORE_SERVING = frozenset(
    {t.ActionKind.REGISTER, t.ActionKind.VERIFY, t.ActionKind.BUILD_IMAGE, t.ActionKind.PUSH_IMAGE}
)
