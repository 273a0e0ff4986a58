"""The engine's sampler (mlops/serving/sampling.py), in process: bounds, recency, baseline
validation, and gauges that agree with `mlops drift` on the same rows."""

from __future__ import annotations

import numpy as np
import pytest

from mlops import datasets
from mlops.drift import stats
from mlops.serving import sampling
from mlops.serving.errors import BadRequest

Feeds = dict[str, np.ndarray]


def feeds(rows: int, shift: float = 0.0, seed: int = 0, width: int = 4) -> Feeds:
    x = np.random.default_rng(seed).normal(size=(rows, width)).astype(np.float32) + shift
    return {"input": x}


def test_every_request_at_rate_one_none_at_zero_and_a_share_in_between() -> None:
    every = sampling.Sampler(rate=1.0, rows=10_000, seed=1)
    never = sampling.Sampler(rate=0.0, seed=1)
    some = sampling.Sampler(rate=0.05, rows=100_000, seed=1)
    for i in range(4000):
        for sampler in (every, never, some):
            sampler.offer("m", "1", feeds(1, seed=i), 1)
    assert every.reservoirs[("m", "1")].filled == 4000
    assert never.reservoirs == {}
    assert 150 < some.reservoirs[("m", "1")].filled < 250  # about 5% of 4000


def test_rows_per_request_memory_bound_and_a_row_too_large() -> None:
    sampler = sampling.Sampler(rate=1.0, rows=1000, max_bytes=100 * 4 * 4, seed=0)
    sampler.offer("m", "1", feeds(64), 64)
    reservoir = sampler.reservoirs[("m", "1")]
    assert reservoir.capacity == 100  # lowered from 1000 rows to fit 1600 bytes
    assert reservoir.filled == sampling.ROWS_PER_REQUEST  # at most 16 rows of one request
    assert reservoir.nbytes() == 100 * 4 * 4
    tiny = sampling.Sampler(rate=1.0, max_bytes=8, seed=0)
    tiny.offer("m", "1", feeds(1), 1)
    assert tiny.reservoirs[("m", "1")].problem is not None
    assert "exceeds the sampling memory bound" in str(tiny.reservoirs[("m", "1")].problem)
    assert tiny.snapshot("m", "1")["rows"] == 0


def test_a_request_shaped_differently_is_skipped_and_text_inputs_ignored() -> None:
    sampler = sampling.Sampler(rate=1.0, seed=0)
    sampler.offer("m", "1", {**feeds(2), "note": np.array([b"a", b"b"], dtype=object)}, 2)
    sampler.offer("m", "1", feeds(2, width=5), 2)
    snap = sampler.snapshot("m", "1")
    assert list(snap["inputs"]) == ["input"] and snap["rows"] == 2


def test_the_reservoir_follows_recent_traffic() -> None:
    sampler = sampling.Sampler(rate=1.0, rows=200, seed=3)
    for i in range(300):
        sampler.offer("m", "1", feeds(1, shift=5.0, seed=i), 1)
    for i in range(4000):
        sampler.offer("m", "1", feeds(1, seed=1000 + i), 1)
    held = sampler.snapshot("m", "1")["inputs"]["input"]["data"]
    assert abs(float(np.mean(held))) < 0.5  # the old shifted rows are (nearly) all replaced


def test_gauges_agree_with_mlops_drift_on_the_same_rows() -> None:
    train = feeds(5000, seed=10)
    baseline = datasets.feature_stats(train)
    sampler = sampling.Sampler(rate=1.0, rows=4096, seed=0)
    for i in range(200):
        sampler.offer("m", "1", feeds(16, shift=0.7, seed=100 + i), 16)
    body = {"features": [s.model_dump() for s in baseline]}
    assert sampler.set_baseline("m", "1", body) == 4
    gauges = {f.name: f for f in sampler.drift()[("m", "1")]}
    held = {"input": sampler.snapshot("m", "1")["inputs"]["input"]["data"]}
    report = stats.compare(baseline, stats.columns(held), threshold_sigma=2.0)
    for feature in report.features:
        assert gauges[feature.name].sigma == pytest.approx(feature.mean_shift, rel=1e-9)
        assert gauges[feature.name].psi == pytest.approx(feature.psi, rel=1e-9)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "features"),
        ({"features": []}, "features"),
        ({"features": [{"name": "x", "mean": 0, "std": -1}]}, "std"),
        ({"features": [{"name": "x", "mean": 0, "std": 1, "histogram": [1.0] * 65}]}, "histogram"),
        ({"features": [{"name": "x", "mean": "nan", "std": 1}]}, "mean"),
        ({"features": [{"name": "x", "mean": 0, "std": 1}] * 2049}, "features"),
        ({"features": [{"name": "x", "mean": 0, "std": 1}], "extra": 1}, "extra"),
    ],
)
def test_a_bad_baseline_is_one_line_400(body: object, fragment: str) -> None:
    sampler = sampling.Sampler()
    with pytest.raises(BadRequest) as caught:
        sampler.set_baseline("m", "1", body)
    assert fragment in caught.value.message and "\n" not in caught.value.message


def test_settings_are_bounded() -> None:
    for rate, rows, max_bytes in ((1.5, 10, 10), (-0.1, 10, 10), (0.1, 0, 10), (0.1, 10, 0)):
        with pytest.raises(ValueError, match="must be between"):
            sampling.Sampler(rate, rows, max_bytes)
