"""Compare live inputs with the training baseline, one feature at a time. Pure: arrays in.

Three measures per feature, each against the stored `FeatureStats`:
- mean shift in training standard deviations (the drift decision: |shift| > threshold_sigma);
- PSI over the stored histogram bins (outer bins open-ended, so live outliers still count);
- a KS-like distance: the largest gap between the training CDF, known at the stored quantiles
  and bin edges, and the live empirical CDF at the same points.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlops import errors
from mlops.state import models as state

# Empty bins would make PSI infinite; this floor is the usual convention.
PSI_FLOOR = 1e-4
# A feature that was constant in training: any move is "infinitely" many sigmas; cap it so
# JSON stays finite while the verdict stays obvious.
MAX_SHIFT = 1e6

Columns = dict[str, np.ndarray[Any, Any]]


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    drifted: bool
    mean_shift: float  # (live mean - training mean) / training std
    psi: float | None  # None when the baseline has no histogram
    ks: float | None  # None when the baseline has neither quantiles nor bins
    train_mean: float
    train_std: float
    live_mean: float
    live_std: float
    rows: int  # finite live values
    missing: int  # NaN/inf live values, ignored by every measure
    bin_edges: tuple[float, ...] = ()
    train_hist: tuple[float, ...] = ()  # proportions per training bin
    live_hist: tuple[float, ...] = ()  # proportions of live values in the same bins


@dataclass(frozen=True)
class DriftResult:
    threshold_sigma: float
    rows: int
    features: tuple[FeatureDrift, ...] = field(default_factory=tuple)

    @property
    def drifted(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.drifted]

    @property
    def has_drift(self) -> bool:
        return any(f.drifted for f in self.features)


def columns(inputs: Mapping[str, np.ndarray[Any, Any]], *, max_features: int = 1024) -> Columns:
    """One 1-D column per feature, named as `datasets.feature_stats` names them: `name` for a
    1-D input, `name[i]` per column, or `name` for an input too wide to split."""
    found: Columns = {}
    for name, array in inputs.items():
        if array.dtype.kind not in "biuf":
            continue
        # Views in the input's own dtype: each feature becomes float64 only while it is
        # compared (_feature), so 1,000,000 x 30 FP32 rows never exist twice as float64.
        values = np.asarray(array)
        if values.ndim <= 1:
            found[name] = values.ravel()
            continue
        flat = values.reshape(values.shape[0], -1)
        if flat.shape[1] > max_features:
            found[name] = flat.ravel()
            continue
        for i in range(flat.shape[1]):
            found[f"{name}[{i}]"] = flat[:, i]
    return found


def check_features(training: Sequence[state.FeatureStats], live: Columns) -> None:
    """Refuse data whose features do not line up with the baseline, naming the difference."""
    expected = [s.name for s in training]
    missing = [n for n in expected if n not in live]
    extra = [n for n in live if n not in set(expected)]
    if not missing and not extra:
        return
    parts = [
        f"missing {_names(missing)}" if missing else "",
        f"unexpected {_names(extra)}" if extra else "",
    ]
    detail = ", ".join(p for p in parts if p)
    raise errors.UsageError(
        f"data has {len(live)} feature(s), the training baseline has {len(expected)}: {detail}"
    )


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def compare(
    training: Sequence[state.FeatureStats], live: Columns, *, threshold_sigma: float
) -> DriftResult:
    check_features(training, live)
    features = tuple(_feature(s, live[s.name], threshold_sigma) for s in training)
    rows = max((f.rows + f.missing for f in features), default=0)
    return DriftResult(threshold_sigma=threshold_sigma, rows=rows, features=features)


def _feature(base: state.FeatureStats, column: np.ndarray[Any, Any], sigma: float) -> FeatureDrift:
    values = np.asarray(column, dtype=np.float64)
    finite = values[np.isfinite(values)]
    missing = int(values.size - finite.size)
    if finite.size == 0:
        raise errors.UsageError(f"feature {base.name!r} has no finite values in the data")
    live_mean, live_std = float(finite.mean()), float(finite.std())
    shift = _shift(live_mean - base.mean, base.std)
    edges = np.asarray(base.bin_edges, dtype=np.float64)
    train_hist = np.asarray(base.histogram, dtype=np.float64)
    has_bins = edges.size >= 2 and train_hist.size == edges.size - 1 and train_hist.sum() > 0
    live_p = _binned(finite, edges) if has_bins else np.zeros(0)
    train_p = train_hist / train_hist.sum() if has_bins else np.zeros(0)
    return FeatureDrift(
        name=base.name,
        drifted=abs(shift) > sigma,
        mean_shift=shift,
        psi=_psi(train_p, live_p) if has_bins else None,
        ks=_ks(base, finite, edges, train_p),
        train_mean=base.mean,
        train_std=base.std,
        live_mean=live_mean,
        live_std=live_std,
        rows=int(finite.size),
        missing=missing,
        bin_edges=tuple(float(e) for e in edges) if has_bins else (),
        train_hist=tuple(float(p) for p in train_p),
        live_hist=tuple(float(p) for p in live_p),
    )


def _shift(delta: float, std: float) -> float:
    if std > 0 and math.isfinite(std):
        return max(-MAX_SHIFT, min(MAX_SHIFT, delta / std))
    return 0.0 if delta == 0 else math.copysign(MAX_SHIFT, delta)


def _binned(values: np.ndarray[Any, Any], edges: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Proportions of `values` in the training bins; values outside fall in the outer bins."""
    inner = edges[1:-1]
    index = np.searchsorted(inner, values, side="right")
    counts = np.bincount(index, minlength=edges.size - 1).astype(np.float64)
    proportions: np.ndarray[Any, Any] = counts / counts.sum()
    return proportions


def _psi(train_p: np.ndarray[Any, Any], live_p: np.ndarray[Any, Any]) -> float:
    t = np.maximum(train_p, PSI_FLOOR)
    v = np.maximum(live_p, PSI_FLOOR)
    return float(np.sum((v - t) * np.log(v / t)))


def _ks(
    base: state.FeatureStats,
    finite: np.ndarray[Any, Any],
    edges: np.ndarray[Any, Any],
    train_p: np.ndarray[Any, Any],
) -> float | None:
    points: list[tuple[float, float]] = []  # (x, training CDF at x)
    for key, x in base.quantiles.items():
        level = _level(key)
        if level is not None and math.isfinite(x):
            points.append((float(x), level))
    if train_p.size:
        cdf = np.concatenate([[0.0], np.cumsum(train_p)])
        points.extend((float(x), float(c)) for x, c in zip(edges, cdf, strict=True))
    if not points:
        return None
    ordered = np.sort(finite)
    xs = np.asarray([x for x, _ in points])
    live_cdf = np.searchsorted(ordered, xs, side="right") / ordered.size
    return float(np.max(np.abs(live_cdf - np.asarray([c for _, c in points]))))


def _level(key: str) -> float | None:
    """`p05` -> 0.05, `p99.9` -> 0.999; anything else is not a quantile key."""
    if not key.startswith("p"):
        return None
    try:
        level = float(key[1:]) / 100
    except ValueError:
        return None
    return level if 0.0 <= level <= 1.0 else None
