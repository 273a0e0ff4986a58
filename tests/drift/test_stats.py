"""Pure drift statistics against FeatureStats computed by mlops.datasets (as at registration)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlops import datasets, errors
from mlops.drift import stats
from mlops.state import models as state


def _baseline(x: np.ndarray) -> list[state.FeatureStats]:
    return datasets.feature_stats({"input": x})


def _rng(seed: int, rows: int = 5_000, features: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, features))


def test_same_distribution_is_quiet() -> None:
    result = stats.compare(
        _baseline(_rng(0)), stats.columns({"input": _rng(1)}), threshold_sigma=2.0
    )
    assert not result.has_drift and result.rows == 5_000
    for f in result.features:
        assert abs(f.mean_shift) < 0.1
        assert f.psi is not None and f.psi < 0.02
        assert f.ks is not None and f.ks < 0.05


def test_known_shift_is_measured_in_training_sigmas() -> None:
    train = _rng(0) * np.array([1.0, 10.0, 1.0, 1.0]) + np.array([0.0, 100.0, 0.0, 0.0])
    live = _rng(1) * np.array([1.0, 10.0, 1.0, 1.0]) + np.array([0.0, 125.0, 0.0, 0.0])
    result = stats.compare(_baseline(train), stats.columns({"input": live}), threshold_sigma=2.0)
    assert [f.name for f in result.drifted] == ["input[1]"]
    shifted = result.features[1]
    assert shifted.mean_shift == pytest.approx(2.5, abs=0.1)
    assert shifted.psi is not None and shifted.psi > 1.0
    assert shifted.ks is not None and shifted.ks > 0.7


def test_threshold_is_strictly_greater() -> None:
    base = [state.FeatureStats(name="x", mean=0.0, std=1.0)]
    live = {"x": np.array([1.0, 3.0])}  # mean 2.0: exactly 2 sigma
    assert not stats.compare(base, live, threshold_sigma=2.0).has_drift
    assert stats.compare(base, live, threshold_sigma=1.9).has_drift


def test_outliers_land_in_the_outer_bins() -> None:
    base = _baseline(_rng(0, features=1))
    live = np.full((100, 1), 1e6)
    (f,) = stats.compare(base, stats.columns({"input": live}), threshold_sigma=2.0).features
    assert f.live_hist[-1] == 1.0 and sum(f.live_hist) == pytest.approx(1.0)
    assert f.ks == pytest.approx(1.0, abs=0.02)


def test_constant_training_feature() -> None:
    base = _baseline(np.ones((50, 1)))
    same = stats.compare(base, {"input[0]": np.ones(10)}, threshold_sigma=2.0)
    assert not same.has_drift and same.features[0].mean_shift == 0.0
    moved = stats.compare(base, {"input[0]": np.full(10, 1.5)}, threshold_sigma=2.0)
    assert moved.has_drift and math.isfinite(moved.features[0].mean_shift)


def test_missing_values_are_counted_not_used() -> None:
    live = _rng(1, rows=100, features=1)
    live[:10, 0] = np.nan
    live[10, 0] = np.inf
    (f,) = stats.compare(
        _baseline(_rng(0, features=1)), stats.columns({"input": live}), threshold_sigma=2.0
    ).features
    assert (f.rows, f.missing) == (89, 11)
    with pytest.raises(errors.UsageError, match="no finite values"):
        stats.compare(
            _baseline(_rng(0, features=1)), {"input[0]": np.full(5, np.nan)}, threshold_sigma=2
        )


def test_baseline_without_histogram_or_quantiles() -> None:
    base = [state.FeatureStats(name="x", mean=0.0, std=1.0)]
    (f,) = stats.compare(base, {"x": np.zeros(5)}, threshold_sigma=2.0).features
    assert f.psi is None and f.ks is None and f.bin_edges == ()


@pytest.mark.parametrize(
    "inputs",
    [
        {"input": np.zeros((5, 3))},  # 2-D: one column per feature
        {"a": np.zeros(5), "b": np.zeros((5, 2, 2))},  # 1-D and a 3-D input
        {"wide": np.zeros((5, 2000))},  # too wide to split: one aggregate feature
        {"x": np.zeros((5, 2)), "text": np.array(["a"] * 5)},  # non-numeric skipped
    ],
)
def test_feature_names_match_the_registry_statistics(inputs: dict[str, np.ndarray]) -> None:
    # The registry names features with datasets.feature_stats; drift must name them alike.
    assert list(stats.columns(inputs)) == [s.name for s in datasets.feature_stats(inputs)]


def test_feature_mismatch_names_the_difference() -> None:
    base = _baseline(_rng(0, features=4))
    with pytest.raises(errors.UsageError) as caught:
        stats.compare(base, stats.columns({"input": _rng(1, features=3)}), threshold_sigma=2)
    assert caught.value.message == (
        "data has 3 feature(s), the training baseline has 4: missing input[3]"
    )
    with pytest.raises(errors.UsageError, match="unexpected input\\[4\\]"):
        stats.compare(base, stats.columns({"input": _rng(1, features=5)}), threshold_sigma=2)
