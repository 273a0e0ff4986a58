"""A checkpoint hold: measure every gate each `interval`, decide, and report through hooks.

A round judges the window of `interval` that ends at it, so the next round starts a full
`interval` after this one ended: no request is judged twice, and a late round (a slow or
timed-out backend, a transient error) is followed by a full interval, never by back-to-back
rounds catching up with a fixed schedule. The last round is at the end of the hold, so time
spent measuring does not stretch the hold (unless that round itself is late). A failed gate
stops the hold at once: the time from a breach to the rollback is at most one interval plus
one measurement."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlops import errors
from mlops.apply import hooks as hooks_
from mlops.gates import evaluate as gates
from mlops.plan import types as plan_types
from mlops.providers import base
from mlops.spec import models as spec

TICK_SECONDS = 1.0  # how often the progress view hears about the time left
MIN_WINDOW_SECONDS = 2.0  # a rate over less than two scrapes is noise


@dataclass(frozen=True)
class Checkpoint:
    """The `after` payload of a checkpoint_gate action, typed."""

    id: str
    model: str
    stable: str | None
    canary: str
    weight: int
    hold: float
    interval: float
    min_requests: int
    consecutive_errors: int
    gates: tuple[spec.Gate, ...]
    shadow: bool

    @classmethod
    def from_action(
        cls,
        action_id: str,
        model: str,
        after: plan_types.CheckpointPayload | Mapping[str, Any],
    ) -> Checkpoint:
        """From the action's payload (a mapping is validated as one)."""
        payload = (
            after
            if isinstance(after, plan_types.CheckpointPayload)
            else plan_types.CheckpointPayload.model_validate(dict(after))
        )
        declared = tuple(payload.gates)
        if payload.stable is None:
            # Nothing to compare with: relative gates could only ever be inconclusive.
            declared = tuple(g for g in declared if not g.relative)
        return cls(
            id=action_id,
            model=model,
            stable=payload.stable,
            canary=payload.canary,
            weight=payload.weight,
            hold=payload.hold,
            interval=max(payload.interval, 0.05),
            min_requests=payload.min_requests,
            consecutive_errors=payload.consecutive_errors,
            gates=declared,
            shadow=payload.shadow,
        )

    def as_event(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "stable": self.stable,
            "canary": self.canary,
            "weight": self.weight,
            "hold": self.hold,
            "interval": self.interval,
            "shadow": self.shadow,
        }


@dataclass(frozen=True)
class HoldResult:
    decision: gates.Decision
    measurements: Sequence[gates.Measurement]
    reason: str


# A round may start this fraction of an interval late (sleep and measurement jitter) without
# the schedule dropping a round for it; the end of the hold moves by at most as much.
JITTER = 0.1


def next_round(hold: float, interval: float, previous: float | None) -> float:
    """Offset from the start of the hold of the round after one that ended at `previous`
    (None: the first round): `interval` after it, or the end of the hold once less than a full
    interval would be left after that. A round at or after `hold` is the last."""
    earliest = min(interval, hold) if previous is None else previous + interval
    if hold - earliest < interval * (1 - JITTER):
        return max(hold, earliest)
    return earliest


def sample_times(hold: float, interval: float) -> list[float]:
    """Offsets from the start of the hold at which the gates are measured, if every round
    takes no time and starts on time."""
    times = [next_round(hold, interval, None)]
    while times[-1] < hold:
        times.append(next_round(hold, interval, times[-1]))
    return times


def measure(
    metrics: base.Metrics, point: Checkpoint, tracker: gates.GateTracker
) -> list[gates.Measurement]:
    """One round. The candidate is judged on what the router sent it or, in a shadow hold,
    on the mirrored requests it ran; stable always on its routed requests of the same window.
    Direct calls to a version never count, so they can neither dilute nor pass a gate."""
    window = max(point.interval, MIN_WINDOW_SECONDS)
    round_: list[gates.Measurement] = []
    for gate in point.gates:
        if point.shadow:
            canary = metrics.sample(point.model, point.canary, gate, window, traffic="shadow")
        else:
            canary = metrics.sample(point.model, point.canary, gate, window)
        stable: gates.Sample | None = None
        if gate.relative and point.stable is not None:
            raw = metrics.sample(point.model, point.stable, gate, window)
            stable = tracker.reference(gate.label, raw, gates.needed(gate, point.min_requests))
        traffic = "shadow" if point.shadow else "routed"
        round_.append(gates.evaluate(gate, canary, stable, point.min_requests, traffic))
    return round_


def hold(
    point: Checkpoint,
    metrics: base.Metrics,
    hooks: hooks_.Hook,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> HoldResult:
    """Run the hold; returns promote, rollback, abort or pause (never raises on bad data)."""
    tracker = gates.GateTracker(consecutive_errors=point.consecutive_errors)
    event = point.as_event()
    start = clock()
    # Providers that build their own series (the built-in scraper) take a first snapshot now,
    # so the first measurement covers a full interval.
    if isinstance(metrics, base.SelfSampling):
        with contextlib.suppress(errors.TransientError):  # the first round reports it
            metrics.observe()
    hooks.on_hold_start(point.model, event, point.hold)
    previous: float | None = None  # when the last round ended, from the start of the hold
    while True:
        offset = next_round(point.hold, point.interval, previous)
        while (left := start + offset - clock()) > 0:
            sleep(min(left, TICK_SECONDS))
            elapsed = clock() - start
            hooks.on_hold_tick(point.model, elapsed, max(point.hold - elapsed, 0.0))
        round_ = _measured(metrics, point, tracker)
        previous = clock() - start
        decision = tracker.observe(round_)
        # A round that ran into the end of the hold is its last (its window reaches there).
        if decision is gates.Decision.CONTINUE and previous >= point.hold:
            decision = tracker.at_hold_end()
        hooks.on_measurement(point.model, event, round_, decision)
        if decision is not gates.Decision.CONTINUE:
            return HoldResult(decision, round_, _reason(decision, round_, point))


def _measured(
    metrics: base.Metrics, point: Checkpoint, tracker: gates.GateTracker
) -> list[gates.Measurement]:
    """One round; a transient backend failure that escapes the provider is this round's error
    verdict for every gate (counted by the tracker, waited out like any round), not the end
    of the apply."""
    try:
        return measure(metrics, point, tracker)
    except errors.TransientError as exc:
        traffic = "shadow" if point.shadow else "routed"
        return [
            gates.evaluate(
                gate, base.Sample(None, 0.0, error=exc.message), None, point.min_requests, traffic
            )
            for gate in point.gates
        ]


def _reason(
    decision: gates.Decision, round_: Sequence[gates.Measurement], point: Checkpoint
) -> str:
    def listed(verdict: gates.Verdict) -> str:
        chosen = [m for m in round_ if m.verdict is verdict]
        return "; ".join(
            f"{m.gate} {_value(m.value)} (threshold {m.threshold}): {m.detail}" for m in chosen
        )

    at = "in the shadow phase (mirrored requests)" if point.shadow else f"at {point.weight}%"
    if decision is gates.Decision.ROLLBACK:
        return f"gate failed {at}: {listed(gates.Verdict.FAILED)}"
    if decision is gates.Decision.ABORT:
        return (
            f"metrics backend failed {point.consecutive_errors} times in a row {at}: "
            f"{listed(gates.Verdict.ERROR)}"
        )
    if decision is gates.Decision.PAUSE:
        pending = listed(gates.Verdict.INCONCLUSIVE) or listed(gates.Verdict.ERROR)
        return f"gates inconclusive at the end of the hold {at}: {pending}"
    return f"gates passed {at}"


def _value(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
