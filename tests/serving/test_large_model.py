"""Large models: no pre-packing, weights memory-mapped from the unchanged `model.onnx`.

The size threshold is lowered for a ~2 MB model so the test stays small; no timing asserts.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from mlops.serving import settings as settings_mod
from mlops.serving import weights
from mlops.serving.errors import BadRequest
from mlops.serving.session import Session

ROWS, COLUMNS = 16, 32_768  # a 2 MB weight, over weights.MIN_EXTERNAL_BYTES


def _model(path: Path, typed_bias: bool = False) -> None:
    rng = np.random.default_rng(5)
    weight = rng.standard_normal((ROWS, COLUMNS), dtype=np.float32)
    bias = rng.standard_normal(COLUMNS, dtype=np.float32)
    if typed_bias:  # float_data instead of raw_data: must stay inline
        bias_init = helper.make_tensor("bias", TensorProto.FLOAT, [COLUMNS], bias.tolist())
    else:
        bias_init = numpy_helper.from_array(bias, "bias")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "weight"], ["product"]),
            helper.make_node("Add", ["product", "bias"], ["sum"]),
            helper.make_node("ReduceSum", ["sum", "axes"], ["score"], keepdims=1),
        ],
        "large",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, ROWS])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])],
        [
            numpy_helper.from_array(weight, "weight"),
            bias_init,
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def _settings() -> settings_mod.VersionSettings:
    return settings_mod.parse(
        {
            "signature": {
                "inputs": [{"name": "input", "dtype": "FP32", "shape": [-1, ROWS]}],
                "outputs": [{"name": "score", "dtype": "FP32", "shape": [-1, 1]}],
            }
        }
    )


def _reference(path: Path, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    options = ort.SessionOptions()
    options.add_session_config_entry("session.disable_prepacking", "1")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    result: np.ndarray[Any, Any] = session.run(["score"], {"input": x})[0]
    return result


def _config(session: Session, key: str) -> str | None:
    options = session._session.get_session_options()
    try:
        value: str = options.get_session_config_entry(key)
    except RuntimeError:  # onnxruntime's answer for a key that was never set
        return None
    return value


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("typed_bias", [False, True])
def test_large_model_maps_its_weights_and_answers_the_same(
    tmp_path: Path, typed_bias: bool
) -> None:
    path = tmp_path / "large" / "1.0.0" / "model.onnx"
    _model(path, typed_bias)
    before = _sha256(path)
    session = Session(str(path), _settings(), 1, large_model_bytes=0)
    assert session.large
    assert _config(session, "session.disable_prepacking") == "1"
    # The 2 MB weight is mapped; the 128 KB bias and the axes stay inline either way.
    assert session.external_weights == 1
    x = np.random.default_rng(6).standard_normal((3, ROWS), dtype=np.float32)
    np.testing.assert_allclose(session.run({"input": x})[0], _reference(path, x), rtol=1e-5)
    session.warm_up(1)
    assert _sha256(path) == before  # the staged artifact is never rewritten
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"]


def test_small_models_load_the_ordinary_way(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    _model(path)
    session = Session(str(path), _settings(), 1)  # default threshold: 64 MB
    assert not session.large and session.external_weights == 0
    assert _config(session, "session.disable_prepacking") is None


def test_models_already_using_external_data_are_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    _model(path)
    model = onnx.load(str(path))
    onnx.save(model, str(path), save_as_external_data=True, location="model.onnx.data")
    assert weights.external_model(path) == (b"", 0)
    session = Session(str(path), _settings(), 1, large_model_bytes=0)
    assert session.external_weights == 0  # onnxruntime maps its own external data
    x = np.ones((1, ROWS), dtype=np.float32)
    np.testing.assert_allclose(session.run({"input": x})[0], _reference(path, x), rtol=1e-5)


def test_a_damaged_large_file_is_a_one_line_load_error(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\xff" * 4096)
    with pytest.raises(weights.Unsupported):
        weights.external_model(path)
    with pytest.raises(BadRequest, match="cannot load"):
        Session(str(path), _settings(), 1, large_model_bytes=0)


def test_loader_threads_run_nicer_than_serving() -> None:
    import os
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from mlops.serving import repository

    def nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    with ThreadPoolExecutor(1, initializer=repository._lower_priority) as pool:
        loader = pool.submit(nice).result()
    expected = min(nice() + repository.LOADER_NICE_INCREMENT, 19)
    assert loader == expected
