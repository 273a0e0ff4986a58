"""JSON tensor values must fit their declared datatype: no wrapping, no overflow, no booleans
passed off as numbers, no duplicated outputs (issue 9, finding 7)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from onnx import TensorProto, helper

from mlops.serving import codec
from mlops.serving.config import ServeConfig
from mlops.serving.errors import BadRequest
from tests.serving import fixtures
from tests.serving.conftest import EngineThread


def _body(datatype: str, data: list[Any], shape: list[int] | None = None, **extra: Any) -> bytes:
    tensor = {"name": "x", "datatype": datatype, "shape": shape or [len(data)], "data": data}
    return orjson.dumps({"inputs": [tensor], **extra})


def _refused(body: bytes) -> str:
    with pytest.raises(BadRequest) as info:
        codec.decode(body)
    assert "\n" not in info.value.message
    return info.value.message


@pytest.mark.parametrize(
    ("datatype", "data"),
    [
        ("UINT8", [-1, 300]),
        ("UINT8", [256]),
        ("INT8", [200, -129]),
        ("INT8", [-129]),
        ("UINT16", [65536]),
        ("INT16", [40000]),
        ("UINT32", [4294967296]),
        ("UINT32", [-1]),
        ("INT32", [3000000000]),
        ("INT32", [-2147483649]),
        ("INT64", [9223372036854775808]),
        ("UINT64", [-1]),
        ("UINT64", [18446744073709551615, -1]),  # numpy alone would widen these to float64
        ("INT64", [9223372036854775808, -1]),
    ],
)
def test_integers_outside_the_datatype_are_refused(datatype: str, data: list[int]) -> None:
    assert f"outside the range of {datatype}" in _refused(_body(datatype, data))


@pytest.mark.parametrize(
    ("datatype", "data"),
    [
        ("UINT8", [0, 255]),
        ("INT8", [-128, 127]),
        ("UINT16", [0, 65535]),
        ("INT16", [-32768, 32767]),
        ("UINT32", [0, 4294967295]),
        ("INT32", [-2147483648, 2147483647]),
        ("INT64", [-9223372036854775808, 9223372036854775807]),
        ("UINT64", [0, 18446744073709551615]),
    ],
)
def test_integers_at_the_edges_of_the_datatype_are_exact(datatype: str, data: list[int]) -> None:
    array = codec.decode(_body(datatype, data)).inputs["x"]
    assert array.dtype.name == datatype.lower()
    assert [int(v) for v in array] == data


@pytest.mark.parametrize(
    ("datatype", "data"),
    [("FP16", [1e6]), ("FP16", [-65520.0]), ("FP16", [70000]), ("FP32", [1e39]), ("FP32", [-4e38])],
)
def test_floats_that_overflow_the_datatype_are_refused(datatype: str, data: list[float]) -> None:
    assert f"outside the range of {datatype}" in _refused(_body(datatype, data))


def test_floats_within_range_are_accepted() -> None:
    assert codec.decode(_body("FP16", [65504.0, -65504.0])).inputs["x"].tolist() == [65504, -65504]
    assert np.isfinite(codec.decode(_body("FP32", [3.4e38])).inputs["x"]).all()
    # Finite float64 values whose sum overflows are still finite values.
    assert codec.decode(_body("FP64", [1.7e308, 1.7e308])).inputs["x"].tolist() == [1.7e308] * 2


@pytest.mark.parametrize(
    ("datatype", "data", "shape"),
    [
        ("FP32", [True, False], [2]),
        ("FP32", [True, 1.5], [2]),
        ("FP32", [1.5, False], [2]),
        ("FP32", [[1.0, 2.0], [3.0, True]], [2, 2]),
        ("FP64", [1, True], [2]),
        ("INT32", [True, 2], [2]),
        ("INT64", [[False]], [1, 1]),
        ("UINT8", [1, 2, True], [3]),
    ],
)
def test_json_booleans_are_not_numbers(datatype: str, data: list[Any], shape: list[int]) -> None:
    _refused(_body(datatype, data, shape))


@pytest.mark.parametrize("data", [[1, 0], [True, 1], [0.0, True], [1.5]])
def test_bool_accepts_only_true_and_false(data: list[Any]) -> None:
    assert "datatype BOOL" in _refused(_body("BOOL", data))


def test_bool_tensors_decode() -> None:
    assert codec.decode(_body("BOOL", [True, False])).inputs["x"].tolist() == [True, False]


def test_the_word_true_elsewhere_in_the_body_does_not_refuse_numbers() -> None:
    body = _body("FP32", [1.0, 2.0], id="true", parameters={"binary_data_output": True})
    request = codec.decode(body)
    assert request.inputs["x"].tolist() == [1.0, 2.0]
    assert request.finite == {"x"}


def test_a_duplicated_requested_output_is_refused() -> None:
    outputs = [{"name": "y"}, {"name": "y", "parameters": {"binary_data": True}}]
    assert "requested twice" in _refused(_body("FP32", [1.0], outputs=outputs))


# -- through the engine ---------------------------------------------------------------------


def _uint8_model() -> bytes:
    """y = float(x) for a UINT8 input of shape [N, 2]."""
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)],
        "cast",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, ["N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineThread]:
    root = tmp_path_factory.mktemp("ranges")
    fixtures.write_version(
        root,
        "u8",
        "1",
        _uint8_model(),
        {
            "signature": {
                "inputs": [{"name": "x", "dtype": "UINT8", "shape": [-1, 2]}],
                "outputs": [{"name": "y", "dtype": "FP32", "shape": [-1, 2]}],
            },
            "classification": False,
        },
    )
    fixtures.write_version(
        root, "clf", "1", fixtures.classifier_bytes(), fixtures.classifier_settings()
    )
    server = EngineThread(
        ServeConfig(repository=root, state_dir=tmp_path_factory.mktemp("ranges-state"))
    )
    yield server
    server.stop()


def test_the_engine_answers_400_to_wrapping_integers_and_runs_nothing(engine: EngineThread) -> None:
    stats = engine.engine.stats.get("u8", "1")
    batches = stats.batches
    with httpx.Client(base_url=engine.url) as client:
        bad = client.post("/v2/models/u8/infer", content=_body("UINT8", [-1, 300], [1, 2]))
        good = client.post("/v2/models/u8/infer", content=_body("UINT8", [0, 255], [1, 2]))
    assert bad.status_code == 400, bad.text
    assert "outside the range of UINT8" in bad.json()["error"]
    assert stats.batches == batches + 1  # only the valid request ran
    assert good.json()["outputs"][0]["data"] == [0.0, 255.0]


def test_the_engine_answers_400_to_booleans_and_duplicated_outputs(engine: EngineThread) -> None:
    features = fixtures.FEATURES
    with httpx.Client(base_url=engine.url) as client:
        booleans = client.post(
            "/v2/models/clf/infer",
            content=_body("FP32", [True] + [0.5] * (features - 1), [1, features]),
        )
        twice = client.post(
            "/v2/models/clf/infer",
            content=_body(
                "FP32",
                [0.5] * features,
                [1, features],
                outputs=[{"name": "probabilities"}, {"name": "probabilities"}],
            ),
        )
    assert booleans.status_code == 400, booleans.text
    assert twice.status_code == 400, twice.text
    assert "requested twice" in twice.json()["error"]
