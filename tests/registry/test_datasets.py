"""Validation data loading and feature statistics (no registry involved)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops import datasets, errors


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)  # type: ignore[arg-type]  # numpy's stub: a key could be allow_pickle
    return path


def test_npz_layout(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    path = _npz(tmp_path / "v.npz", a=x, b=np.ones((6, 3)), labels=np.arange(6), extra=np.zeros(1))
    inputs, labels = datasets.load_validation(path, ["a", "b"])
    assert set(inputs) == {"a", "b"}
    np.testing.assert_array_equal(inputs["a"], x)
    assert inputs["a"].dtype == np.float32 and labels.tolist() == list(range(6))


def test_csv_and_parquet_single_input(tmp_path: Path) -> None:
    frame = pd.DataFrame({"f1": [1.0, 2.0, 3.0], "f2": [4, 5, 6], "label": [0, 1, 0]})
    frame.to_csv(tmp_path / "v.csv", index=False)
    frame.to_parquet(tmp_path / "v.parquet")
    for name in ("v.csv", "v.parquet"):
        inputs, labels = datasets.load_validation(tmp_path / name, ["input"])
        assert inputs["input"].shape == (3, 2)
        assert inputs["input"][:, 1].tolist() == [4, 5, 6] and labels.tolist() == [0, 1, 0]


def test_table_with_several_inputs_uses_one_column_each(tmp_path: Path) -> None:
    pd.DataFrame({"age": [30, 40], "income": [1.5, 2.5], "label": [1, 0]}).to_csv(
        tmp_path / "v.csv", index=False
    )
    inputs, _ = datasets.load_validation(tmp_path / "v.csv", ["age", "income"])
    assert inputs["income"].shape == (2, 1)
    with pytest.raises(errors.ArtifactError, match="'height'"):
        datasets.load_validation(tmp_path / "v.csv", ["age", "height"])


def test_features_without_labels_for_drift(tmp_path: Path) -> None:
    path = _npz(tmp_path / "live.npz", input=np.ones((4, 2)))
    assert datasets.load_features(path, ["input"])["input"].shape == (4, 2)
    with pytest.raises(errors.ArtifactError, match="'labels'"):
        datasets.load_validation(path, ["input"])


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"labels": np.arange(3)}, "lacks array"),
        ({"input": np.ones((3, 2)), "labels": np.arange(4)}, "row counts differ"),
        ({"input": np.ones((0, 2)), "labels": np.arange(0)}, "no rows"),
        ({"input": np.array([{"a": 1}], dtype=object), "labels": np.arange(1)}, "unreadable"),
    ],
    ids=["missing-input", "row-mismatch", "empty", "pickled-object"],
)
def test_bad_npz_is_refused(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    path = _npz(tmp_path / "v.npz", **arrays)
    with pytest.raises(errors.ArtifactError, match=message):
        datasets.load_validation(path, ["input"])


def test_size_caps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _npz(tmp_path / "v.npz", input=np.ones((100, 4)), labels=np.arange(100))
    with pytest.raises(errors.ArtifactError, match="limit"):
        datasets.load_validation(path, ["input"], max_bytes=100)
    # A small compressed archive that declares a large payload is refused before inflating.
    monkeypatch.setattr(datasets, "MAX_VALUES", 1024)
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("input.npy", b"\0" * (1024 * 1024))
    assert bomb.stat().st_size < 8 * 1024
    with pytest.raises(errors.ArtifactError, match="inflates"):
        datasets.load_validation(bomb, ["input"])


def test_bad_tables_and_files(tmp_path: Path) -> None:
    pd.DataFrame({"f": ["a", "b"], "label": [0, 1]}).to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(errors.ArtifactError, match="not numeric"):
        datasets.load_validation(tmp_path / "s.csv", ["input"])
    with pytest.raises(errors.ArtifactError, match="does not exist"):
        datasets.load_validation(tmp_path / "none.npz", ["input"])
    (tmp_path / "v.json").write_text("{}")
    with pytest.raises(errors.ArtifactError, match=r"\.npz, \.csv or \.parquet"):
        datasets.load_validation(tmp_path / "v.json", ["input"])
    (tmp_path / "bad.parquet").write_bytes(b"nope")
    with pytest.raises(errors.ArtifactError, match="unreadable"):
        datasets.load_validation(tmp_path / "bad.parquet", ["input"])


def test_feature_stats_values() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(loc=[0.0, 10.0], scale=[1.0, 2.0], size=(5000, 2))
    stats = datasets.feature_stats({"input": x, "flag": np.array([True, False] * 2500)})
    assert [s.name for s in stats] == ["input[0]", "input[1]", "flag"]
    second = stats[1]
    assert second.mean == pytest.approx(x[:, 1].mean()) and second.std == pytest.approx(
        x[:, 1].std()
    )
    assert second.quantiles["p50"] == pytest.approx(float(np.median(x[:, 1])))
    assert list(second.quantiles) == ["p01", "p05", "p25", "p50", "p75", "p95", "p99"]
    assert sum(second.histogram) == 5000 and len(second.bin_edges) == len(second.histogram) + 1
    assert stats[2].mean == 0.5 and stats[2].count == 5000


def test_feature_stats_edge_cases() -> None:
    stats = datasets.feature_stats(
        {
            "const": np.full((10,), 3.0),
            "nan": np.array([np.nan, 1.0, np.inf, 3.0]),
            "allnan": np.array([np.nan, np.nan]),
            "text": np.array(["a", "b"]),
            "image": np.zeros((2, 40, 40)),
        },
        max_features=1024,
    )
    by_name = {s.name: s for s in stats}
    assert by_name["const"].std == 0.0 and sum(by_name["const"].histogram) == 10
    assert by_name["nan"].count == 2 and by_name["nan"].mean == 2.0
    assert by_name["allnan"].count == 0
    assert "text" not in by_name  # nothing meaningful to compare for strings
    assert by_name["image"].count == 3200  # one aggregate entry, not 1,600 features
