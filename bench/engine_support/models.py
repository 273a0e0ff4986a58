"""Benchmark models, generated at run time (nothing is downloaded or checked in).

- `tiny`: a scikit-learn LogisticRegression (30 features, 2 classes) converted with skl2onnx;
  inference costs a few microseconds, so a server's front end is all that is measured.
- `wide`: an MLP built with `onnx.helper`, 64 -> 1536 -> 1536 -> 1536 -> 1536 -> 2 (about 28 MB of
  weights). At batch 1 it streams its weights from memory for roughly 1 ms; a batch of 32
  reuses them, which is what dynamic batching is for.
- `big`: one MatMul with a ~500 MB initializer, for the load-time scenario.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
WIDE_INPUTS = 64
WIDE_HIDDEN = 1536
WIDE_LAYERS = 4
TINY_FEATURES = 30


@dataclass(frozen=True)
class Model:
    """A generated model: its file, its V2 signature and one V2 JSON request body."""

    name: str
    path: Path
    signature: dict[str, list[dict[str, Any]]]
    body: bytes

    def settings(self, **extra: Any) -> dict[str, Any]:
        """The engine's settings.json content for this model (extra keys added on top)."""
        return {"signature": self.signature, **extra}


def _io(name: str, dtype: str, shape: list[int]) -> dict[str, Any]:
    return {"name": name, "dtype": dtype, "shape": shape}


def v2_body(input_name: str, row: np.ndarray) -> bytes:
    """One-row V2 JSON request, the same bytes for every server."""
    request = {
        "inputs": [
            {
                "name": input_name,
                "shape": [1, int(row.size)],
                "datatype": "FP32",
                "data": [round(float(value), 6) for value in row],
            }
        ]
    }
    return json.dumps(request, separators=(",", ":")).encode()


def _save(model: onnx.ModelProto, path: Path) -> None:
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def tiny_classifier(path: Path, seed: int = 0) -> Model:
    """LogisticRegression trained on synthetic data, converted with skl2onnx (no zipmap)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    features = rng.standard_normal((2000, TINY_FEATURES)).astype(np.float32)
    labels = (features @ rng.standard_normal(TINY_FEATURES) > 0).astype(np.int64)
    classifier = LogisticRegression(max_iter=500).fit(features, labels)
    onnx_model = convert_sklearn(
        classifier,
        initial_types=[("input", FloatTensorType([None, TINY_FEATURES]))],
        options={id(classifier): {"zipmap": False}},
        target_opset={"": OPSET, "ai.onnx.ml": 3},
    )
    _save(onnx_model, path)
    signature = {
        "inputs": [_io("input", "FP32", [-1, TINY_FEATURES])],
        "outputs": [_io("label", "INT64", [-1]), _io("probabilities", "FP32", [-1, 2])],
    }
    return Model("tiny", path, signature, v2_body("input", features[0]))


def _mlp_graph(name: str, widths: list[int], seed: int) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    previous = "input"
    last = len(widths) - 2
    for index, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
        weight = (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
        initializers.append(numpy_helper.from_array(weight, f"w{index}"))
        product = "score" if index == last else f"matmul{index}"
        nodes.append(helper.make_node("MatMul", [previous, f"w{index}"], [product]))
        if index != last:
            nodes.append(helper.make_node("Relu", [product], [f"relu{index}"]))
            previous = f"relu{index}"
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, widths[0]])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, widths[-1]])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def wide_mlp(path: Path, seed: int = 1) -> Model:
    """The compute-bound model for the batching scenario (about 1 ms at batch 1)."""
    widths = [WIDE_INPUTS] + [WIDE_HIDDEN] * WIDE_LAYERS + [2]
    _save(_mlp_graph("wide", widths, seed), path)
    signature = {
        "inputs": [_io("input", "FP32", [-1, WIDE_INPUTS])],
        "outputs": [_io("score", "FP32", [-1, 2])],
    }
    row = np.random.default_rng(seed).standard_normal(WIDE_INPUTS).astype(np.float32)
    return Model("wide", path, signature, v2_body("input", row))


def big_model(path: Path, megabytes: int = 500, seed: int = 2) -> Model:
    """input[-1, 1000] x W[1000, K] -> ReduceSum -> score[-1, 1], W about `megabytes` MB."""
    rows = 1000
    columns = megabytes * 1_000_000 // (4 * rows)
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((rows, columns), dtype=np.float32)
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "weight"], ["product"]),
            helper.make_node("ReduceSum", ["product", "axes"], ["score"], keepdims=1),
        ],
        "big",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, rows])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])],
        [numpy_helper.from_array(weight, "weight"), axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))  # checker skipped: it serializes the 500 MB proto again
    signature = {
        "inputs": [_io("input", "FP32", [-1, rows])],
        "outputs": [_io("score", "FP32", [-1, 1])],
    }
    row = rng.standard_normal(rows).astype(np.float32)
    return Model("big", path, signature, v2_body("input", row))
