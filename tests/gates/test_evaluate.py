"""Gate evaluation: table-driven, pure (no processes, no clock)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from mlops.core import Verdict
from mlops.gates import evaluate as ev
from mlops.providers.base import Sample
from mlops.spec import models as spec


def gate(**kwargs: Any) -> spec.Gate:
    return spec.Gate(**kwargs)


ERR = gate(metric="error_rate", max=0.001)
P99 = gate(metric="latency_p99", max_increase=0.20)
P99_ABS = gate(metric="latency_p99", max=50.0)
P99_BOTH = gate(metric="latency_p99", max=50.0, max_increase=0.20)
P50 = gate(metric="latency_p50", max=5.0)
AGREE = gate(metric="shadow_agreement", min=0.98)
CTR = gate(name="ctr", query="sum(rate(x[1m]))", min=0.02, max=0.5)

CASES: list[tuple[str, spec.Gate, Sample, Sample | None, int, Verdict]] = [
    ("error rate under max", ERR, Sample(0.0005, 500), None, 100, Verdict.PASSED),
    ("error rate at max passes", ERR, Sample(0.001, 500), None, 100, Verdict.PASSED),
    ("error rate over max", ERR, Sample(0.02, 500), None, 100, Verdict.FAILED),
    ("too few requests", ERR, Sample(0.5, 99), None, 100, Verdict.INCONCLUSIVE),
    ("zero requests, min 0, no value", ERR, Sample(None, 0), None, 0, Verdict.INCONCLUSIVE),
    ("NaN value is no data", ERR, Sample(math.nan, 500), None, 100, Verdict.INCONCLUSIVE),
    ("backend error", ERR, Sample(None, 0, "connection refused"), None, 100, Verdict.ERROR),
    ("error beats few requests", ERR, Sample(None, 0, "timeout"), None, 100, Verdict.ERROR),
    ("p99 within +20%", P99, Sample(11.9, 500), Sample(10.0, 5000), 100, Verdict.PASSED),
    ("p99 over +20%", P99, Sample(12.5, 500), Sample(10.0, 5000), 100, Verdict.FAILED),
    ("p99 without stable", P99, Sample(12.5, 500), None, 100, Verdict.INCONCLUSIVE),
    ("p99 stable no data", P99, Sample(9.0, 500), Sample(None, 0), 100, Verdict.INCONCLUSIVE),
    ("p99 stable backend error", P99, Sample(9.0, 500), Sample(None, 0, "x"), 100, Verdict.ERROR),
    ("p99 absolute ok", P99_ABS, Sample(40.0, 500), None, 100, Verdict.PASSED),
    ("p99 absolute over", P99_ABS, Sample(60.0, 500), None, 100, Verdict.FAILED),
    ("p99 both, relative fails", P99_BOTH, Sample(30.0, 500), Sample(10.0, 900), 1, Verdict.FAILED),
    ("p99 both, absolute fails", P99_BOTH, Sample(60.0, 500), Sample(55.0, 900), 1, Verdict.FAILED),
    ("p50 absolute ok", P50, Sample(1.2, 200), None, 100, Verdict.PASSED),
    ("agreement ok", AGREE, Sample(0.99, 1000), None, 100, Verdict.PASSED),
    ("agreement low", AGREE, Sample(0.90, 1000), None, 100, Verdict.FAILED),
    ("query in range", CTR, Sample(0.1, 1000), None, 100, Verdict.PASSED),
    ("query under min", CTR, Sample(0.01, 1000), None, 100, Verdict.FAILED),
    ("query over max", CTR, Sample(0.9, 1000), None, 100, Verdict.FAILED),
    ("query error", CTR, Sample(None, 0, "query gates need Prometheus"), None, 1, Verdict.ERROR),
]


@pytest.mark.parametrize(
    ("gate_", "canary", "stable", "min_requests", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_evaluate(
    gate_: spec.Gate,
    canary: Sample,
    stable: Sample | None,
    min_requests: int,
    expected: Verdict,
) -> None:
    m = ev.evaluate(gate_, canary, stable, min_requests)
    assert m.verdict is expected
    assert m.gate == gate_.label
    assert m.threshold
    assert m.detail
    assert m.requests == canary.requests


def test_measurement_details_name_values_and_thresholds() -> None:
    m = ev.evaluate(P99, Sample(15.0, 500), Sample(10.0, 900), 100)
    assert m.value == 15.0
    assert m.reference == 10.0
    assert "+50%" in m.detail and "+20%" in m.detail
    assert m.threshold == "<= stable (10) +20%"
    assert ev.evaluate(ERR, Sample(0.5, 3), None, 100).detail == (
        "3 requests in the window, need 100"
    )
    assert ev.evaluate(CTR, Sample(0.1, 1), None, 0).threshold == ">= 0.02 and <= 0.5"
    nan = ev.evaluate(ERR, Sample(math.nan, 500), None, 1)
    assert nan.value is None
    assert nan.to_dict()["verdict"] == "inconclusive"


def m(label: str, verdict: Verdict) -> ev.Measurement:
    return ev.Measurement(label, verdict, None, "<= 1")


SUMMARIES = [
    ([], Verdict.PASSED),
    ([Verdict.PASSED, Verdict.PASSED], Verdict.PASSED),
    ([Verdict.PASSED, Verdict.INCONCLUSIVE], Verdict.INCONCLUSIVE),
    ([Verdict.INCONCLUSIVE, Verdict.ERROR], Verdict.ERROR),
    ([Verdict.ERROR, Verdict.FAILED, Verdict.INCONCLUSIVE], Verdict.FAILED),
]


@pytest.mark.parametrize(("verdicts", "expected"), SUMMARIES)
def test_summarize(verdicts: list[Verdict], expected: Verdict) -> None:
    assert ev.summarize(m(f"g{i}", v) for i, v in enumerate(verdicts)) is expected


E, P, INC, F = Verdict.ERROR, Verdict.PASSED, Verdict.INCONCLUSIVE, Verdict.FAILED
D = ev.Decision

TRACKS: list[tuple[str, int, list[dict[str, Verdict]], list[ev.Decision], ev.Decision]] = [
    ("all pass promotes", 3, [{"a": P}, {"a": P}], [D.CONTINUE, D.CONTINUE], D.PROMOTE),
    (
        "errors reach limit",
        3,
        [{"a": E}, {"a": E}, {"a": E}],
        [D.CONTINUE] * 2 + [D.ABORT],
        D.PAUSE,
    ),
    ("a success resets", 2, [{"a": E}, {"a": P}, {"a": E}], [D.CONTINUE] * 3, D.PAUSE),
    ("streaks are per gate", 2, [{"a": E, "b": P}, {"a": P, "b": E}], [D.CONTINUE] * 2, D.PAUSE),
    (
        "one gate keeps failing",
        2,
        [{"a": E, "b": P}, {"a": E, "b": P}],
        [D.CONTINUE, D.ABORT],
        D.PAUSE,
    ),
    ("failure rolls back", 4, [{"a": P}, {"a": F, "b": E}], [D.CONTINUE, D.ROLLBACK], D.PAUSE),
    ("inconclusive pauses", 4, [{"a": P}, {"a": INC}], [D.CONTINUE, D.CONTINUE], D.PAUSE),
    ("recovers to pass", 4, [{"a": INC}, {"a": E}, {"a": P}], [D.CONTINUE] * 3, D.PROMOTE),
    ("no rounds pauses", 4, [], [], D.PAUSE),
]


@pytest.mark.parametrize(
    ("limit", "rounds", "decisions", "at_end"),
    [t[1:] for t in TRACKS],
    ids=[t[0] for t in TRACKS],
)
def test_tracker(
    limit: int,
    rounds: list[dict[str, Verdict]],
    decisions: list[ev.Decision],
    at_end: ev.Decision,
) -> None:
    tracker = ev.GateTracker(consecutive_errors=limit)
    got = [tracker.observe(m(k, v) for k, v in round_.items()) for round_ in rounds]
    assert got == decisions
    assert tracker.at_hold_end() is at_end
    assert len(tracker.rounds) == len(rounds)


def test_tracker_keeps_last_good_stable_reference() -> None:
    tracker = ev.GateTracker(consecutive_errors=4)
    good = Sample(10.0, 500)
    assert tracker.reference("latency_p99", good, 100) is good
    # At weight 95 the stable version sees few requests: reuse the last good window.
    thin = Sample(30.0, 4)
    assert tracker.reference("latency_p99", thin, 100) is good
    assert tracker.reference("latency_p99", Sample(None, 0, "down"), 100) is good
    # With no good window yet, the thin sample is passed through (evaluate decides).
    fresh = ev.GateTracker(consecutive_errors=4)
    assert fresh.reference("latency_p99", thin, 100) is thin
