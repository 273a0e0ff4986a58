"""Drift data readers: the data file `mlops drift --data` reads (datasets.load_features:
.csv, .npz, .parquet) and the comparison of what it read with the training statistics
(drift/stats.py). A file either yields a drift result with finite figures or a one-line
error; never another exception."""

from __future__ import annotations

import io
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mlops import datasets
from mlops.drift import stats
from tests.fuzz import oracle
from tests.fuzz.profiles import TIMEOUT_S, budget

pytestmark = pytest.mark.timeout(TIMEOUT_S)

NAMES = ("input",)
_rng = np.random.default_rng(0)
TRAINING = datasets.feature_stats({"input": _rng.normal(size=(200, 3)).astype(np.float32)})


def _npz(arrays: dict[str, np.ndarray[Any, Any]]) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)  # type: ignore[arg-type]
    return out.getvalue()


def _csv(frame: np.ndarray[Any, Any], header: list[str]) -> bytes:
    text: str = pd.DataFrame(frame, columns=header).to_csv(index=False)
    return text.encode()


_floats = st.floats(width=32) | st.sampled_from([0.0, 1e38, -1e38, float("nan"), float("inf")])
_tables = hnp.arrays(
    np.float64, hnp.array_shapes(min_dims=2, max_dims=2, max_side=6), elements=_floats
)
_columns = st.lists(
    st.sampled_from(["input[0]", "input[1]", "input[2]", "input", "label", "x", ""]),
    min_size=1,
    max_size=6,
)
_VALID_CSV = _csv(
    np.arange(12, dtype=np.float64).reshape(4, 3), ["input[0]", "input[1]", "input[2]"]
)
_VALID_NPZ = _npz({"input": _rng.normal(size=(5, 3)).astype(np.float32)})


@st.composite
def data_files(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from([".csv", ".npz", ".parquet"]))
    if kind == ".csv":
        table = draw(_tables)
        header = draw(_columns)
        header = (header * table.shape[1])[: table.shape[1]]
        options = [
            st.just(_csv(table, header)),
            oracle.mutated(_VALID_CSV.decode()).map(str.encode),
            st.binary(max_size=200),
        ]
    elif kind == ".npz":
        arrays = draw(
            st.dictionaries(
                st.sampled_from(["input", "labels", "other"]),
                hnp.arrays(
                    st.sampled_from([np.float32, np.float64, np.int64, np.bool_, np.uint8]),
                    hnp.array_shapes(min_dims=0, max_dims=3, max_side=5),
                ),
                max_size=3,
            )
        )
        raw = _npz(arrays)
        cut = draw(st.integers(0, len(_VALID_NPZ)))
        options = [
            st.just(raw),
            st.just(_VALID_NPZ[:cut] + draw(st.binary(max_size=8)) + _VALID_NPZ[cut + 8 :]),
            st.binary(max_size=200),
        ]
    else:
        table = draw(_tables)
        out = io.BytesIO()
        pd.DataFrame(table, columns=[f"input[{i}]" for i in range(table.shape[1])]).to_parquet(out)
        raw = out.getvalue()
        cut = draw(st.integers(0, len(raw)))
        options = [st.just(raw), st.just(raw[:cut]), st.binary(max_size=200)]
    return kind, draw(st.one_of(options))


@pytest.fixture(scope="module")
def directory() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


@budget(250)
@given(file=data_files())
@example(file=(".csv", b"input[0],input[1],input[2]\n1,2,3\n4,5\n"))
@example(file=(".npz", b"PK\x03\x04" + b"\x00" * 40))
@example(file=(".csv", b"\x00\n\x00\n,"))  # found: pandas' message ended in a line break
def test_drift_data_files_compare_or_get_one_line_error(
    directory: Path, file: tuple[str, bytes]
) -> None:
    suffix, raw = file
    path = directory / f"data{suffix}"
    path.write_bytes(raw)
    try:
        inputs = oracle.parse(lambda: datasets.load_features(path, NAMES))
        result = oracle.parse(
            lambda: stats.compare(TRAINING, stats.columns(inputs), threshold_sigma=2.0)
        )
    except oracle.Refused:
        return
    for feature in result.features:
        assert math.isfinite(feature.mean_shift), feature
        assert feature.psi is None or math.isfinite(feature.psi), feature
        assert feature.rows > 0


@budget(200)
@given(
    live=hnp.arrays(np.float64, st.integers(0, 30), elements=_floats),
    train=hnp.arrays(np.float64, st.integers(1, 30), elements=st.floats(-1e6, 1e6)),
)
def test_drift_figures_are_finite_for_any_values(
    live: np.ndarray[Any, Any], train: np.ndarray[Any, Any]
) -> None:
    baseline = datasets.feature_stats({"x": train})
    try:
        result = oracle.parse(lambda: stats.compare(baseline, {"x": live}, threshold_sigma=2.0))
    except oracle.Refused:
        return
    (feature,) = result.features
    assert math.isfinite(feature.mean_shift) and math.isfinite(feature.live_mean)
    assert feature.psi is None or math.isfinite(feature.psi)
    assert feature.ks is None or 0.0 <= feature.ks <= 1.0
