"""Turn metric samples into gate verdicts. Pure: values in, values out, no clock, no I/O.

A measurement error is a verdict (`error`), never an exception, and missing data is
`inconclusive`, never `passed`: a rollout must not promote on data it does not have.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from mlops import core
from mlops.spec import models as spec

Verdict = core.Verdict


class Sample(Protocol):
    """What a metrics provider returns (`mlops.providers.base.Sample` has this shape). Declared
    structurally so that this pure module does not depend on the providers package."""

    @property
    def value(self) -> float | None: ...
    @property
    def requests(self) -> float: ...
    @property
    def error(self) -> str | None: ...


@dataclass(frozen=True)
class Measurement:
    """One gate measured once for the canary (and, for relative gates, the stable version)."""

    gate: str  # the gate's label: its name, else its metric
    verdict: Verdict
    value: float | None
    threshold: str  # human-readable, e.g. "<= 0.001" or "<= stable x 1.20 (12.0 ms)"
    detail: str = ""
    requests: float = 0.0
    reference: float | None = None  # the stable version's value for relative gates
    # Which requests were judged: "routed" (what the router sent the canary) or "shadow" (the
    # mirrored requests a shadow ran during its hold); `requests` counts those.
    traffic: str = "routed"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict.value}


def evaluate(
    gate: spec.Gate,
    canary: Sample,
    stable: Sample | None,
    min_requests: int,
    traffic: str = "routed",
) -> Measurement:
    """Measure one gate. `stable` is needed only for relative (`max_increase`, `max_decrease`)
    gates. `traffic` says what
    `canary` counted (routed requests, or a shadow's mirrored ones); only the wording and the
    record depend on it: `min_requests` applies to those requests either way."""
    label = gate.label
    threshold = threshold_text(gate, stable.value if stable else None)
    shadow = traffic == "shadow"
    outcomes = gate.metric == "positive_rate"
    min_requests = needed(gate, min_requests)

    def result(verdict: Verdict, detail: str, reference: float | None = None) -> Measurement:
        value = canary.value if _finite(canary.value) else None
        return Measurement(
            label, verdict, value, threshold, detail, canary.requests, reference, traffic
        )

    if canary.error is not None:
        return result(Verdict.ERROR, canary.error)
    if canary.requests < min_requests:
        what = "mirrored requests" if shadow and gate.metric != "shadow_agreement" else "requests"
        what = "feedback outcomes" if outcomes else what
        return result(
            Verdict.INCONCLUSIVE,
            f"{_count(canary.requests)} {what} in the window, need {min_requests}",
        )
    value = canary.value
    if value is None or not math.isfinite(value):
        who = "the shadow" if shadow else "the canary"
        return result(Verdict.INCONCLUSIVE, f"no data for {who} in the window")

    failures: list[str] = []
    if gate.max is not None and value > gate.max:
        failures.append(f"{_fmt(value)} > max {_fmt(gate.max)}")
    if gate.min is not None and value < gate.min:
        failures.append(f"{_fmt(value)} < min {_fmt(gate.min)}")

    reference: float | None = None
    if gate.max_increase is not None:
        if stable is None:
            return result(Verdict.INCONCLUSIVE, "no stable version to compare with")
        if stable.error is not None:
            return result(Verdict.ERROR, f"stable: {stable.error}")
        reference = stable.value
        if reference is None or not math.isfinite(reference) or reference <= 0:
            return result(Verdict.INCONCLUSIVE, "no data for the stable version in the window")
        limit = reference * (1.0 + gate.max_increase)
        if value > limit:
            increase = value / reference - 1.0
            failures.append(
                f"{_fmt(value)} is +{increase:.0%} over stable {_fmt(reference)} "
                f"(allowed +{gate.max_increase:.0%})"
            )
    if gate.max_decrease is not None:
        if stable is None:
            return result(Verdict.INCONCLUSIVE, "no stable version to compare with")
        if stable.error is not None:
            return result(Verdict.ERROR, f"stable: {stable.error}")
        reference = stable.value
        if reference is None or not math.isfinite(reference) or stable.requests < min_requests:
            have = _count(stable.requests)
            return result(
                Verdict.INCONCLUSIVE,
                f"stable has {have} feedback outcomes in the window, need {min_requests}",
            )
        floor = reference * (1.0 - gate.max_decrease)
        if value < floor:
            decrease = 1.0 - value / reference if reference > 0 else 0.0
            failures.append(
                f"{_fmt(value)} is -{decrease:.0%} under stable {_fmt(reference)} "
                f"(allowed -{gate.max_decrease:.0%})"
            )
    if failures:
        return result(Verdict.FAILED, "; ".join(failures), reference)
    return result(Verdict.PASSED, f"{_fmt(value)} within {threshold}", reference)


def summarize(measurements: Iterable[Measurement]) -> Verdict:
    """One verdict for a checkpoint round: failed > error > inconclusive > passed."""
    verdicts = {m.verdict for m in measurements}
    for verdict in (Verdict.FAILED, Verdict.ERROR, Verdict.INCONCLUSIVE):
        if verdict in verdicts:
            return verdict
    return Verdict.PASSED


def threshold_text(gate: spec.Gate, stable_value: float | None = None) -> str:
    parts: list[str] = []
    if gate.min is not None:
        parts.append(f">= {_fmt(gate.min)}")
    if gate.max is not None:
        parts.append(f"<= {_fmt(gate.max)}")
    if gate.max_increase is not None:
        ref = f" ({_fmt(stable_value)})" if _finite(stable_value) else ""
        parts.append(f"<= stable{ref} +{gate.max_increase:.0%}")
    if gate.max_decrease is not None:
        ref = f" ({_fmt(stable_value)})" if _finite(stable_value) else ""
        parts.append(f">= stable{ref} -{gate.max_decrease:.0%}")
    if gate.metric == "positive_rate":
        parts.append(f"over >= {needed(gate, 0)} outcomes")
    return " and ".join(parts)


# Feedback outcomes a positive_rate gate needs (per version and window) when it names none.
DEFAULT_MIN_OUTCOMES = 20


def needed(gate: spec.Gate, min_requests: int) -> int:
    """What the canary's (and a relative gate's stable) count must reach before a verdict:
    the rollout's `min_requests`, or for a feedback gate its own `min_outcomes`."""
    if gate.metric == "positive_rate":
        return gate.min_outcomes if gate.min_outcomes is not None else DEFAULT_MIN_OUTCOMES
    return min_requests


class Decision(StrEnum):
    """What the executor should do after a round of measurements, or at the end of a hold."""

    CONTINUE = "continue"  # keep holding
    ROLLBACK = "rollback"  # a gate failed
    ABORT = "abort"  # the metric backend failed `consecutive_errors` times in a row
    PROMOTE = "promote"  # hold over, last round passed
    PAUSE = "pause"  # hold over without a passing round: wait for promote/rollback


@dataclass
class GateTracker:
    """State of one checkpoint's gates across its hold (a small pure state machine).

    Error streaks are counted per gate, like Argo Rollouts' consecutiveErrorLimit: a gate
    that measures once resets its own streak, but not another gate's.
    """

    consecutive_errors: int
    streaks: dict[str, int] = field(default_factory=dict)
    rounds: list[list[Measurement]] = field(default_factory=list)
    _references: dict[str, Sample] = field(default_factory=dict)

    def observe(self, measurements: Iterable[Measurement]) -> Decision:
        round_ = list(measurements)
        self.rounds.append(round_)
        for m in round_:
            self.streaks[m.gate] = (
                self.streaks.get(m.gate, 0) + 1 if m.verdict is Verdict.ERROR else 0
            )
        verdict = summarize(round_)
        if verdict is Verdict.FAILED:
            return Decision.ROLLBACK
        if self.streaks and max(self.streaks.values()) >= self.consecutive_errors:
            return Decision.ABORT
        return Decision.CONTINUE

    def at_hold_end(self) -> Decision:
        """Promote only on a passing last round; anything else (no round at all too) pauses."""
        if self.rounds and summarize(self.rounds[-1]) is Verdict.PASSED:
            return Decision.PROMOTE
        return Decision.PAUSE

    @property
    def last(self) -> list[Measurement]:
        return self.rounds[-1] if self.rounds else []

    def reference(self, gate: str, stable: Sample, min_requests: int) -> Sample:
        """The stable sample to compare with: this window's when it has enough requests, else
        the last good one of this checkpoint. At high canary weights the stable version may see
        too little traffic for a meaningful p99 of its own."""
        if stable.error is None and _finite(stable.value) and stable.requests >= min_requests:
            self._references[gate] = stable
            return stable
        return self._references.get(gate, stable)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4g}"


def _count(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"
