"""Progress events of an apply run. Every listener subclasses `Hook` (all methods no-ops).

The journal, the terminal progress view and the rollout status file all listen to the same
events, so what the user sees, what `mlops status` reports and what a resume reads agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mlops.gates import evaluate as gates
from mlops.plan import types as plan_types


class Hook:
    """Base listener. Override what you need; every method is called synchronously."""

    def on_run_start(self, run_id: str, plan: plan_types.Plan, resumed: bool) -> None: ...

    def on_action_start(self, action: plan_types.Action) -> None: ...

    def on_action_end(self, action: plan_types.Action, outcome: str, detail: str = "") -> None:
        """`outcome`: done | noop (already in effect) | skipped | failed."""

    def on_weight(self, model: str, weights: Mapping[str, int], generation: int) -> None:
        """A weight table was applied and read back from every replica."""

    def on_hold_start(
        self, model: str, checkpoint: Mapping[str, Any], remaining: float
    ) -> None: ...

    def on_measurement(
        self,
        model: str,
        checkpoint: Mapping[str, Any],
        measurements: Sequence[gates.Measurement],
        decision: gates.Decision,
    ) -> None: ...

    def on_hold_tick(self, model: str, elapsed: float, remaining: float) -> None: ...

    def on_rollback(self, model: str, canary: str, reason: str) -> None: ...

    def on_pause(self, model: str, checkpoint_id: str, reason: str) -> None: ...

    def on_decision(self, model: str, decision: str, who: str) -> None:
        """A human decision (promote/rollback of a paused rollout)."""

    def on_message(self, text: str) -> None: ...

    def on_run_end(self, outcome: str) -> None: ...


class Hooks(Hook):
    """Fan-out to several listeners, in order. Listener errors propagate: the journal is a
    listener too, and losing a journal write must stop the run."""

    def __init__(self, listeners: Sequence[Hook] = ()) -> None:
        self.listeners = list(listeners)

    def add(self, listener: Hook) -> None:
        self.listeners.append(listener)

    def on_run_start(self, run_id: str, plan: plan_types.Plan, resumed: bool) -> None:
        for hook in self.listeners:
            hook.on_run_start(run_id, plan, resumed)

    def on_action_start(self, action: plan_types.Action) -> None:
        for hook in self.listeners:
            hook.on_action_start(action)

    def on_action_end(self, action: plan_types.Action, outcome: str, detail: str = "") -> None:
        for hook in self.listeners:
            hook.on_action_end(action, outcome, detail)

    def on_weight(self, model: str, weights: Mapping[str, int], generation: int) -> None:
        for hook in self.listeners:
            hook.on_weight(model, weights, generation)

    def on_hold_start(self, model: str, checkpoint: Mapping[str, Any], remaining: float) -> None:
        for hook in self.listeners:
            hook.on_hold_start(model, checkpoint, remaining)

    def on_measurement(
        self,
        model: str,
        checkpoint: Mapping[str, Any],
        measurements: Sequence[gates.Measurement],
        decision: gates.Decision,
    ) -> None:
        for hook in self.listeners:
            hook.on_measurement(model, checkpoint, measurements, decision)

    def on_hold_tick(self, model: str, elapsed: float, remaining: float) -> None:
        for hook in self.listeners:
            hook.on_hold_tick(model, elapsed, remaining)

    def on_rollback(self, model: str, canary: str, reason: str) -> None:
        for hook in self.listeners:
            hook.on_rollback(model, canary, reason)

    def on_pause(self, model: str, checkpoint_id: str, reason: str) -> None:
        for hook in self.listeners:
            hook.on_pause(model, checkpoint_id, reason)

    def on_decision(self, model: str, decision: str, who: str) -> None:
        for hook in self.listeners:
            hook.on_decision(model, decision, who)

    def on_message(self, text: str) -> None:
        for hook in self.listeners:
            hook.on_message(text)

    def on_run_end(self, outcome: str) -> None:
        for hook in self.listeners:
            hook.on_run_end(outcome)
