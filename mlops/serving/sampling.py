"""Live input sampling: per version, a bounded reservoir of recent request inputs.

The hot path pays one countdown per request: the gap to the next sampled request is drawn
from a geometric distribution (each request is sampled with probability `rate`), and only a
sampled request's rows are copied, at most `ROWS_PER_REQUEST` of them. Rows enter a fixed
reservoir by reservoir sampling (Algorithm R) whose count of rows seen is capped at
`WINDOW_FACTOR` times its size: once full, each new row replaces a random slot with
probability 1/WINDOW_FACTOR, so the reservoir holds a uniform-like sample of recent traffic
rather than of all traffic since the start. Memory per version is preallocated once and
bounded by `max_bytes`; nothing is written to disk.

The controller gives a version its training statistics (`PUT /v2/samples/NAME/VERSION`,
admin only); the collector then exports, per feature, the mean shift in training standard
deviations and the PSI of the reservoir against them. The two measures are computed as
mlops/drift/stats.py computes them (the controller's `mlops drift`); tests/drift checks that
the engine's gauges and `mlops drift --live` agree.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydantic
from pydantic import BaseModel, ConfigDict, Field

from mlops.serving import schema
from mlops.serving.errors import BadRequest

DEFAULT_RATE = 0.05  # of requests
DEFAULT_ROWS = 1024  # per version
DEFAULT_MAX_BYTES = 8 << 20  # per version
MAX_ROWS = 1 << 20
MAX_BYTES = 1 << 30
ROWS_PER_REQUEST = 16  # rows copied from one sampled request (a contiguous run at random)
WINDOW_FACTOR = 4
MAX_FEATURES = 1024  # per input, as datasets.feature_stats splits inputs into features
MAX_BASELINE_FEATURES = 2048
MAX_BINS = 64  # datasets.feature_stats records 20
BASELINE_BODY_LIMIT = 8 << 20
PSI_FLOOR = 1e-4  # as mlops/drift/stats.py
MAX_SHIFT = 1e6

Key = tuple[str, str]


class _Feature(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str = Field(min_length=1, max_length=300)
    mean: float = Field(allow_inf_nan=False)
    std: float = Field(ge=0, allow_inf_nan=False)
    histogram: list[float] = Field(default_factory=list, max_length=MAX_BINS)
    bin_edges: list[float] = Field(default_factory=list, max_length=MAX_BINS + 1)


class BaselineBody(BaseModel):
    """`PUT /v2/samples/NAME/VERSION`: the version's training statistics (FeatureStats)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    features: list[_Feature] = Field(min_length=1, max_length=MAX_BASELINE_FEATURES)


@dataclass(frozen=True, slots=True)
class FeatureBaseline:
    name: str
    mean: float
    std: float
    inner_edges: np.ndarray[Any, Any]  # bin edges without the outer two (open-ended bins)
    train_p: np.ndarray[Any, Any]  # proportions per bin; empty when there is no histogram


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    name: str
    sigma: float
    psi: float | None


class Reservoir:
    """Recent rows of one version's numeric inputs, one preallocated buffer per input."""

    __slots__ = ("_buffers", "_capacity", "_max_bytes", "_rows", "filled", "problem", "seen")

    def __init__(self, rows: int, max_bytes: int) -> None:
        self._rows, self._max_bytes = rows, max_bytes
        self._capacity = 0
        self._buffers: dict[str, np.ndarray[Any, Any]] = {}
        self.filled = 0  # rows held
        self.seen = 0  # rows offered, capped at WINDOW_FACTOR * capacity
        self.problem: str | None = None  # why this version is not sampled, once known

    @property
    def capacity(self) -> int:
        return self._capacity

    def nbytes(self) -> int:
        return sum(b.nbytes for b in self._buffers.values())

    def _allocate(self, feeds: dict[str, np.ndarray[Any, Any]], batched: bool) -> bool:
        shapes = {n: (a.shape[1:] if batched else a.shape, a.dtype) for n, a in feeds.items()}
        numeric = {n: s for n, s in shapes.items() if s[1].kind in "biuf"}
        row_bytes = sum(math.prod(shape) * dtype.itemsize for shape, dtype in numeric.values())
        if not numeric:
            self.problem = "no numeric input"
            return False
        capacity = min(self._rows, self._max_bytes // max(row_bytes, 1))
        if capacity < 1:
            self.problem = f"one row ({row_bytes} bytes) exceeds the sampling memory bound"
            return False
        self._capacity = capacity
        self._buffers = {
            n: np.empty((capacity, *shape), dtype=dtype) for n, (shape, dtype) in numeric.items()
        }
        return True

    def add(self, feeds: dict[str, np.ndarray[Any, Any]], rows: int, rng: random.Random) -> None:
        batched = all(a.ndim >= 1 and a.shape[0] == rows for a in feeds.values())
        if not self._buffers and (self.problem is not None or not self._allocate(feeds, batched)):
            return
        for name, buffer in self._buffers.items():
            array = feeds.get(name)
            shape = None if array is None else (array.shape[1:] if batched else array.shape)
            if array is None or shape != buffer.shape[1:] or array.dtype != buffer.dtype:
                return  # a request shaped unlike the first sampled one (dynamic dims): skipped
        take = rows if batched else 1
        if take <= 0:
            return
        start = rng.randrange(take - ROWS_PER_REQUEST + 1) if take > ROWS_PER_REQUEST else 0
        capacity, window = self._capacity, self._capacity * WINDOW_FACTOR
        for row in range(start, start + min(take, ROWS_PER_REQUEST)):
            if self.filled < capacity:
                slot = self.filled
                self.filled += 1
            else:
                slot = rng.randrange(self.seen + 1)
                if slot >= capacity:
                    self.seen = min(self.seen + 1, window)
                    continue
            self.seen = min(self.seen + 1, window)
            for name, buffer in self._buffers.items():
                array = feeds[name]
                buffer[slot] = array[row] if batched else array

    def arrays(self) -> dict[str, np.ndarray[Any, Any]]:
        """The rows held, per input (copies: the buffers keep changing)."""
        return {n: b[: self.filled].copy() for n, b in self._buffers.items()}


class Sampler:
    """Every reservoir and baseline of one engine worker. Used from the event loop only."""

    def __init__(
        self,
        rate: float = DEFAULT_RATE,
        rows: int = DEFAULT_ROWS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        seed: int | None = None,
    ) -> None:
        check(rate, rows, max_bytes)
        self.rate, self.rows, self.max_bytes = rate, rows, max_bytes
        self._rng = random.Random(seed)
        self._log_keep = math.log1p(-rate) if 0 < rate < 1 else 0.0
        self._countdown = self._gap()
        self.reservoirs: dict[Key, Reservoir] = {}
        self.baselines: dict[Key, tuple[FeatureBaseline, ...]] = {}

    def _gap(self) -> int:
        """Requests until the next sampled one (geometric; 1 = the next)."""
        if self.rate <= 0:
            return 1 << 62
        if self.rate >= 1:
            return 1
        return int(math.log(1.0 - self._rng.random()) / self._log_keep) + 1

    def offer(
        self, name: str, version: str, feeds: dict[str, np.ndarray[Any, Any]], rows: int
    ) -> None:
        """Called once per successful request; copies rows only for a sampled one."""
        self._countdown -= 1
        if self._countdown > 0:
            return
        self._countdown = self._gap()
        key = (name, version)
        reservoir = self.reservoirs.get(key)
        if reservoir is None:
            reservoir = self.reservoirs[key] = Reservoir(self.rows, self.max_bytes)
        reservoir.add(feeds, rows, self._rng)

    def forget(self, name: str, version: str) -> None:
        """An unloaded version's reservoir and baseline go with it."""
        self.reservoirs.pop((name, version), None)
        self.baselines.pop((name, version), None)

    def snapshot(self, name: str, version: str) -> dict[str, Any]:
        """What `GET /v2/samples/NAME/VERSION` answers: the rows held, per input."""
        reservoir = self.reservoirs.get((name, version))
        arrays = reservoir.arrays() if reservoir is not None else {}
        return {
            "name": name,
            "version": version,
            "rate": self.rate,
            "capacity": 0 if reservoir is None else reservoir.capacity,
            "rows": 0 if reservoir is None else reservoir.filled,
            "seen": 0 if reservoir is None else reservoir.seen,
            "problem": None if reservoir is None else reservoir.problem,
            "baseline": (name, version) in self.baselines,
            "inputs": {
                n: {"dtype": a.dtype.name, "shape": list(a.shape), "data": a}
                for n, a in arrays.items()
            },
        }

    def set_baseline(self, name: str, version: str, body: Any) -> int:
        try:
            schema.check_name(name)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        try:
            doc = BaselineBody.model_validate(body)
        except pydantic.ValidationError as exc:
            raise BadRequest(f"baseline: {schema.describe(exc)}") from None
        self.baselines[(name, version)] = tuple(_baseline(f) for f in doc.features)
        return len(doc.features)

    def drift(self) -> dict[Key, list[FeatureDrift]]:
        """Per version with both a baseline and sampled rows: shift and PSI per feature."""
        found: dict[Key, list[FeatureDrift]] = {}
        for key, features in self.baselines.items():
            reservoir = self.reservoirs.get(key)
            if reservoir is None or reservoir.filled == 0:
                continue
            columns = feature_columns(reservoir.arrays())
            found[key] = [_drift(f, columns[f.name]) for f in features if f.name in columns]
        return found


def check(rate: float, rows: int, max_bytes: int) -> None:
    """Bounds of the three settings, one line each (ServeConfig and the CLI use them)."""
    if not (isinstance(rate, float | int) and 0.0 <= rate <= 1.0):
        raise ValueError(f"sample rate {rate!r} must be between 0 and 1")
    if not 1 <= rows <= MAX_ROWS:
        raise ValueError(f"sample rows {rows!r} must be between 1 and {MAX_ROWS}")
    if not 1 <= max_bytes <= MAX_BYTES:
        raise ValueError(f"sample memory {max_bytes!r} must be between 1 and {MAX_BYTES} bytes")


def feature_columns(arrays: dict[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
    """One float64 column per feature, named as mlops.datasets.feature_stats names them."""
    found: dict[str, np.ndarray[Any, Any]] = {}
    for name, array in arrays.items():
        values = np.asarray(array, dtype=np.float64)
        if values.ndim <= 1:
            found[name] = values.ravel()
            continue
        flat = values.reshape(values.shape[0], -1)
        if flat.shape[1] > MAX_FEATURES:
            found[name] = flat.ravel()
            continue
        for i in range(flat.shape[1]):
            found[f"{name}[{i}]"] = flat[:, i]
    return found


def _baseline(f: _Feature) -> FeatureBaseline:
    edges = np.asarray(f.bin_edges, dtype=np.float64)
    hist = np.asarray(f.histogram, dtype=np.float64)
    usable = edges.size >= 2 and hist.size == edges.size - 1 and hist.sum() > 0
    return FeatureBaseline(
        name=f.name,
        mean=f.mean,
        std=f.std,
        inner_edges=edges[1:-1] if usable else np.zeros(0),
        train_p=hist / hist.sum() if usable else np.zeros(0),
    )


def _drift(base: FeatureBaseline, values: np.ndarray[Any, Any]) -> FeatureDrift:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return FeatureDrift(base.name, 0.0, None)
    delta = float(finite.mean()) - base.mean
    if base.std > 0:
        sigma = max(-MAX_SHIFT, min(MAX_SHIFT, delta / base.std))
    else:
        sigma = 0.0 if delta == 0 else math.copysign(MAX_SHIFT, delta)
    psi = None
    if base.train_p.size:
        index = np.searchsorted(base.inner_edges, finite, side="right")
        counts = np.bincount(index, minlength=base.train_p.size).astype(np.float64)
        live = np.maximum(counts / counts.sum(), PSI_FLOOR)
        train = np.maximum(base.train_p, PSI_FLOOR)
        psi = float(np.sum((live - train) * np.log(live / train)))
    return FeatureDrift(base.name, sigma, psi)
