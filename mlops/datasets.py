"""Validation and drift data: loading with size caps, and per-feature statistics.

Layouts (contract): `.npz` with one array per signature input plus `labels`; `.csv` or
`.parquet` with one column per feature and a `label` column. With one input, every feature
column goes into it in file order; with several inputs, each input is a column of its own.
Independent of any registry: conformance, drift and the registry all use it.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlops import errors
from mlops.state import models as state

MAX_FILE_BYTES = 512 * 1024**2
MAX_VALUES = 64 * 1024**2  # cells in a table, or decompressed bytes / 8 in an .npz
LABELS_NPZ = "labels"
LABEL_COLUMN = "label"
QUANTILES = {
    "p01": 0.01,
    "p05": 0.05,
    "p25": 0.25,
    "p50": 0.5,
    "p75": 0.75,
    "p95": 0.95,
    "p99": 0.99,
}

Arrays = dict[str, np.ndarray[Any, Any]]


def load_validation(
    path: Path, input_names: Sequence[str], *, max_bytes: int = MAX_FILE_BYTES
) -> tuple[Arrays, np.ndarray[Any, Any]]:
    """(inputs by name, labels). DataError-style ArtifactError for anything unusable."""
    inputs, labels = _load(path, input_names, max_bytes=max_bytes, need_labels=True)
    assert labels is not None
    return inputs, labels


def load_features(
    path: Path, input_names: Sequence[str], *, max_bytes: int = MAX_FILE_BYTES
) -> Arrays:
    """Inputs only (labels optional): for drift, where the live data has no labels."""
    return _load(path, input_names, max_bytes=max_bytes, need_labels=False)[0]


def _load(
    path: Path, names: Sequence[str], *, max_bytes: int, need_labels: bool
) -> tuple[Arrays, np.ndarray[Any, Any] | None]:
    if not names:
        raise errors.UsageError("no input names given for the validation data")
    if not path.is_file():
        raise errors.ArtifactError(f"validation data {str(path)!r} does not exist")
    size = path.stat().st_size
    if size > max_bytes:
        raise errors.ArtifactError(
            f"validation data {str(path)!r} is {size} bytes; the limit is {max_bytes}"
        )
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            inputs, labels = _load_npz(path, names)
        elif suffix in (".csv", ".parquet"):
            inputs, labels = _load_table(path, names, suffix)
        else:
            raise errors.ArtifactError(
                f"validation data {str(path)!r}: use a .npz, .csv or .parquet file"
            )
    except errors.MlopsError:
        raise
    except Exception as exc:  # numpy, zipfile, pandas and pyarrow each raise their own types
        # One line, bounded: pandas' tokenizer errors end in a line break (found by tests/fuzz).
        reason = " ".join(str(exc).split())[:300]
        raise errors.ArtifactError(
            f"validation data {str(path)!r} is unreadable: {reason}"
        ) from None
    if need_labels and labels is None:
        key = LABELS_NPZ if suffix == ".npz" else LABEL_COLUMN
        raise errors.ArtifactError(f"validation data {str(path)!r} has no {key!r}")
    _check_rows(path, inputs, labels)
    return inputs, labels


def _load_npz(path: Path, names: Sequence[str]) -> tuple[Arrays, np.ndarray[Any, Any] | None]:
    # Check the declared uncompressed size first: a small .npz can inflate to gigabytes.
    with zipfile.ZipFile(path) as archive:
        inflated = sum(info.file_size for info in archive.infolist())
    if inflated > MAX_VALUES * 8:
        raise errors.ArtifactError(f"validation data {str(path)!r} inflates to {inflated} bytes")
    with np.load(path, allow_pickle=False) as npz:
        keys = set(npz.files)
        missing = [n for n in names if n not in keys]
        if missing:
            raise errors.ArtifactError(
                f"validation data {str(path)!r} lacks array(s) {', '.join(map(repr, missing))} "
                f"(it has: {', '.join(sorted(keys)) or 'nothing'})"
            )
        inputs = {n: np.asarray(npz[n]) for n in names}
        labels = np.asarray(npz[LABELS_NPZ]) if LABELS_NPZ in keys else None
    return inputs, labels


def _load_table(
    path: Path, names: Sequence[str], suffix: str
) -> tuple[Arrays, np.ndarray[Any, Any] | None]:
    import pandas as pd  # heavy: only for tabular data

    if suffix == ".parquet":
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(path).metadata
        if meta.num_rows * max(meta.num_columns, 1) > MAX_VALUES:
            raise errors.ArtifactError(f"validation data {str(path)!r} has too many values")
        frame = pd.read_parquet(path)
    else:
        frame = pd.read_csv(path, nrows=MAX_VALUES)
    labels = frame.pop(LABEL_COLUMN).to_numpy() if LABEL_COLUMN in frame.columns else None
    if frame.shape[1] == 0:
        raise errors.ArtifactError(f"validation data {str(path)!r} has no feature columns")
    for column in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            raise errors.ArtifactError(
                f"validation data {str(path)!r}: column {str(column)!r} is not numeric"
            )
    if len(names) == 1:
        return {names[0]: frame.to_numpy()}, labels
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise errors.ArtifactError(
            f"validation data {str(path)!r} lacks column(s) {', '.join(map(repr, missing))} "
            "(with several inputs, each input is a column)"
        )
    return {n: frame[n].to_numpy().reshape(-1, 1) for n in names}, labels


def _check_rows(path: Path, inputs: Arrays, labels: np.ndarray[Any, Any] | None) -> None:
    rows = {name: (a.shape[0] if a.ndim else 0) for name, a in inputs.items()}
    if labels is not None:
        rows[LABELS_NPZ] = labels.shape[0] if labels.ndim else 0
    counts = set(rows.values())
    if counts == {0} or 0 in counts:
        raise errors.ArtifactError(f"validation data {str(path)!r} has no rows")
    if len(counts) > 1:
        detail = ", ".join(f"{k}={v}" for k, v in rows.items())
        raise errors.ArtifactError(f"validation data {str(path)!r}: row counts differ ({detail})")


def feature_stats(
    inputs: Mapping[str, np.ndarray[Any, Any]], *, bins: int = 20, max_features: int = 1024
) -> list[state.FeatureStats]:
    """One entry per feature: `name` for a 1-D input, `name[i]` per column otherwise.

    Inputs with more than `max_features` values per row (images, embeddings) get a single
    aggregate entry; non-numeric inputs are skipped (nothing meaningful to compare).
    """
    stats: list[state.FeatureStats] = []
    for name, array in inputs.items():
        if array.dtype.kind not in "biuf":
            continue
        values = np.asarray(array, dtype=np.float64)
        if values.ndim <= 1:
            stats.append(_one(name, values.ravel(), bins))
            continue
        columns = values.reshape(values.shape[0], -1)
        if columns.shape[1] > max_features:
            stats.append(_one(name, columns.ravel(), bins))
            continue
        stats.extend(_one(f"{name}[{i}]", columns[:, i], bins) for i in range(columns.shape[1]))
    return stats


def _one(name: str, values: np.ndarray[Any, Any], bins: int) -> state.FeatureStats:
    finite = values[np.isfinite(values)]  # NaN/inf would poison every statistic and JSON
    if finite.size == 0:
        return state.FeatureStats(name=name, mean=0.0, std=0.0, count=0)
    counts, edges = np.histogram(finite, bins=bins)
    qs = np.quantile(finite, list(QUANTILES.values()))
    return state.FeatureStats(
        name=name,
        mean=float(finite.mean()),
        std=float(finite.std()),
        count=int(finite.size),
        quantiles={k: float(q) for k, q in zip(QUANTILES, qs, strict=True)},
        histogram=[float(c) for c in counts],
        bin_edges=[float(e) for e in edges],
    )
