"""Checkpoint holds driven by scripted samples and a virtual clock (no real waiting)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mlops.apply import checkpoints, hooks
from mlops.gates import evaluate as gates
from mlops.providers.base import Sample, Traffic
from mlops.spec import models as spec

AFTER = {
    "stable": "1.0.0",
    "canary": "1.1.0",
    "weight": 10,
    "hold": 10.0,
    "interval": 2.0,
    "min_requests": 50,
    "consecutive_errors": 3,
    "gates": [
        {"metric": "error_rate", "max": 0.01},
        {"metric": "latency_p99", "max_increase": 0.2},
    ],
    "shadow": False,
}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Scripted:
    """Metrics whose canary samples come from a script; stable is always healthy."""

    def __init__(self, canary: Iterator[Sample]) -> None:
        self.canary = canary
        self.calls: list[tuple[str, str]] = []

    def sample(
        self,
        model: str,
        version: str,
        gate: spec.Gate,
        window_seconds: float,
        traffic: Traffic = "routed",
    ) -> Sample:
        self.calls.append((version, gate.label))
        if version == "1.0.0":
            return Sample(10.0, 500.0)
        return next(self.canary)


def run(
    samples: list[Sample], after: dict[str, object] = AFTER
) -> tuple[checkpoints.HoldResult, Scripted]:
    point = checkpoints.Checkpoint.from_action("m/05-checkpoint_gate-10", "m", after)
    metrics = Scripted(iter(samples))
    clock = Clock()
    result = checkpoints.hold(point, metrics, hooks.Hook(), clock=clock, sleep=clock.sleep)
    return result, metrics


def good() -> list[Sample]:
    # error_rate then latency_p99, per round
    return [Sample(0.0, 500.0), Sample(11.0, 500.0)] * 10


def test_sample_times_cover_the_hold() -> None:
    assert checkpoints.sample_times(10.0, 2.0) == [2.0, 4.0, 6.0, 8.0, 10.0]
    # 4.0 would leave less than an interval before the last round: rounds never come closer.
    assert checkpoints.sample_times(5.0, 2.0) == [2.0, 5.0]
    assert checkpoints.sample_times(1.0, 5.0) == [1.0]


def test_passing_hold_promotes_after_every_round() -> None:
    result, metrics = run(good())
    assert result.decision is gates.Decision.PROMOTE
    assert len([c for c in metrics.calls if c == ("1.1.0", "error_rate")]) == 5


def test_failed_gate_rolls_back_at_once() -> None:
    samples = [Sample(0.0, 500.0), Sample(11.0, 500.0), Sample(0.2, 500.0), Sample(11.0, 500.0)]
    result, metrics = run(samples)
    assert result.decision is gates.Decision.ROLLBACK
    assert "error_rate" in result.reason and "0.2" in result.reason
    assert len([c for c in metrics.calls if c[0] == "1.1.0"]) == 4  # stopped after round 2


def test_backend_errors_abort_after_the_limit() -> None:
    samples = [Sample(None, 0.0, error="connection refused"), Sample(11.0, 500.0)] * 5
    result, _ = run(samples)
    assert result.decision is gates.Decision.ABORT
    assert "3 times in a row" in result.reason


def test_inconclusive_hold_pauses_never_promotes() -> None:
    samples = [Sample(0.0, 3.0), Sample(11.0, 3.0)] * 10
    result, _ = run(samples)
    assert result.decision is gates.Decision.PAUSE
    assert "need 50" in result.reason


def test_without_a_stable_version_relative_gates_are_dropped() -> None:
    after = {**AFTER, "stable": None}
    point = checkpoints.Checkpoint.from_action("id", "m", after)
    assert [g.label for g in point.gates] == ["error_rate"]


@pytest.mark.parametrize("value", [0.0, 0.009])
def test_error_rate_under_the_limit_passes(value: float) -> None:
    samples = [Sample(value, 500.0), Sample(11.0, 500.0)] * 10
    assert run(samples)[0].decision is gates.Decision.PROMOTE
