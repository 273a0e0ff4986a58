"""Models for engine tests, generated at test time (never committed binaries).

- a classifier: scikit-learn LogisticRegression exported with skl2onnx (probabilities 2-D FP32)
- a slow model: a stack of large MatMuls, about a millisecond at batch 1
- an erroring model: a Reshape whose target shape comes from the data, so rows holding 7.0
  make onnxruntime raise at run time while ordinary rows succeed
- an identity model with the erroring model's signature: its well-behaved twin
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FEATURES = 8
SLOW_WIDTH = 1024
POISON = 7.0  # a value in any row that makes the erroring model fail


def classifier_bytes(seed: int = 0, features: int = FEATURES) -> bytes:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, features)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.3, size=400) > 0).astype(np.int64)
    model = LogisticRegression().fit(x, y)
    onx = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, features]))],
        options={id(model): {"zipmap": False}},
        target_opset=17,
    )
    return bytes(onx.SerializeToString())


def classifier_settings(features: int = FEATURES, **batching: Any) -> dict[str, Any]:
    return {
        "signature": {
            "inputs": [{"name": "input", "dtype": "FP32", "shape": [-1, features]}],
            "outputs": [{"name": "probabilities", "dtype": "FP32", "shape": [-1, 2]}],
        },
        "batching": batching,
        "warmup": {"requests": 2},
    }


def slow_bytes(width: int = SLOW_WIDTH, layers: int = 6) -> bytes:
    rng = np.random.default_rng(1)
    nodes, inits, prev = [], [], "input"
    for i in range(layers):
        w = (rng.normal(size=(width, width)) / np.sqrt(width)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        out = "output" if i == layers - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [out]))
        prev = out
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [None, width])],
        inits,
    )
    return _serialize(graph)


def slow_settings(width: int = SLOW_WIDTH, **batching: Any) -> dict[str, Any]:
    return {
        "signature": {
            "inputs": [{"name": "input", "dtype": "FP32", "shape": [-1, width]}],
            "outputs": [{"name": "output", "dtype": "FP32", "shape": [-1, width]}],
        },
        "batching": batching,
        "classification": False,
    }


def erroring_bytes() -> bytes:
    """output = Reshape(input, [-1, int(max(input))]): fine for values < 1, fails for 7."""
    nodes = [
        helper.make_node("ReduceMax", ["input"], ["m"], keepdims=0),
        helper.make_node("Cast", ["m"], ["c"], to=TensorProto.INT64),
        helper.make_node("Unsqueeze", ["c", "axes"], ["c1"]),
        helper.make_node("Concat", ["minus_one", "c1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["input", "shape"], ["output"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([0], dtype=np.int64), "axes"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "minus_one"),
    ]
    graph = helper.make_graph(
        nodes,
        "erroring",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [None, None])],
        inits,
    )
    return _serialize(graph)


def erroring_settings(**batching: Any) -> dict[str, Any]:
    return {
        "signature": {
            "inputs": [{"name": "input", "dtype": "FP32", "shape": [-1, 4]}],
            "outputs": [{"name": "output", "dtype": "FP32", "shape": [-1, -1]}],
        },
        "batching": batching,
        "classification": False,
    }


def identity_bytes() -> bytes:
    """output = input, with `erroring_bytes`' signature: never fails, so it can be the primary
    a misbehaving shadow is compared with (agrees below 1.0, differs from 1.0 to 7.0, fails
    at 7.0)."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"])],
        "identity",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [None, None])],
    )
    return _serialize(graph)


def _serialize(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def write_version(
    root: Path, name: str, version: str, model: bytes, settings: dict[str, Any]
) -> Path:
    directory = root / name / version
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.onnx").write_bytes(model)
    (directory / "settings.json").write_text(json.dumps(settings))
    return directory
