"""The example trainer: reproducible, and its output matches the example spec exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from mlops.spec import load

REPO = Path(__file__).resolve().parents[2]
V2_DTYPES = {onnx.TensorProto.FLOAT: "FP32", onnx.TensorProto.INT64: "INT64"}


def train(out: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "train.py"), "--out", str(out), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("train")
    return out, train(out, "--version", "1.0.0")


def _tensors(values: Any) -> list[tuple[str, str, list[int]]]:
    found = []
    for value in values:
        tensor = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        found.append((value.name, V2_DTYPES[tensor.elem_type], shape))
    return found


def test_artifact_matches_the_example_spec(trained: tuple[Path, dict[str, Any]]) -> None:
    out, report = trained
    (item,) = load.load_specs([REPO / "specs"], REPO)
    model = item.deployment.spec.model
    graph = onnx.load(str(out / "models" / "fraud-scorer-1.0.0.onnx")).graph
    declared_in = [(t.name, t.dtype.value, t.shape) for t in model.signature.inputs]
    declared_out = [(t.name, t.dtype.value, t.shape) for t in model.signature.outputs]
    assert _tensors(graph.input) == declared_in
    assert _tensors(graph.output) == declared_out
    assert report["value"] == model.baseline.value


def test_validation_set_layout(trained: tuple[Path, dict[str, Any]]) -> None:
    out, _ = trained
    with np.load(out / "data" / "fraud-scorer-val.npz") as data:
        assert sorted(data.files) == ["input", "labels"]
        assert data["input"].dtype == np.float32 and data["input"].shape[1] == 30
        assert data["labels"].shape == (data["input"].shape[0],)
        assert set(np.unique(data["labels"])) == {0, 1}


def test_same_version_same_bytes_other_version_similar_accuracy(
    trained: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    _, first = trained
    again = train(tmp_path, "--version", "1.0.0")
    assert again["sha256"] == first["sha256"]
    newer = train(tmp_path, "--version", "1.1.0")
    assert newer["sha256"] != first["sha256"]
    assert abs(float(newer["value"]) - float(first["value"])) < 0.02


def test_broken_variant_is_clearly_worse(tmp_path: Path) -> None:
    report = train(tmp_path, "--version", "1.2.0", "--variant", "broken")
    assert float(report["value"]) < 0.5
