"""The request decoder: valid JSON and binary requests, and a fuzz that only ever gets 400s."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops.serving import codec, encode
from mlops.serving.errors import BadRequest


def _request(**tensor: Any) -> bytes:
    base = {"name": "input", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4]}
    return json.dumps({"inputs": [{**base, **tensor}]}).encode()


def test_json_tensor_is_decoded_with_its_shape_and_dtype() -> None:
    request = codec.decode(_request())
    array = request.inputs["input"]
    assert array.dtype == np.float32
    assert array.shape == (2, 2)
    assert request.outputs is None


def test_nested_json_data_is_accepted() -> None:
    request = codec.decode(_request(data=[[1, 2], [3, 4]]))
    assert request.inputs["input"].tolist() == [[1, 2], [3, 4]]


def test_binary_tensor_extension() -> None:
    data = np.arange(4, dtype=np.float32)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": [2, 2],
                    "parameters": {"binary_data_size": 16},
                }
            ],
            "outputs": [{"name": "out", "parameters": {"binary_data": True}}],
        }
    ).encode()
    request = codec.decode(header + data.tobytes(), len(header))
    assert request.inputs["input"].ravel().tolist() == [0, 1, 2, 3]
    assert request.binary_outputs == {"out"}


@pytest.mark.parametrize(
    ("body", "header_length", "reason"),
    [
        (b"{not json", None, "malformed JSON"),
        (b"[]", None, "JSON object"),
        (_request(shape=[3, 2]), None, "elements"),
        (_request(data=["a", "b", "c", "d"]), None, "datatype"),
        (_request(data=[[1, 2], [3]]), None, "ragged"),
        (_request(datatype="STRING"), None, "unsupported datatype"),
        (_request(shape=[-1, 4]), None, "invalid dimension"),
        (_request(), 10_000, "outside the body"),
        (_request(parameters={"binary_data_size": 16}), None, "past the end"),
    ],
)
def test_malformed_requests_get_a_one_line_reason(
    body: bytes, header_length: int | None, reason: str
) -> None:
    with pytest.raises(BadRequest) as info:
        codec.decode(body, header_length)
    assert reason in info.value.message
    assert "\n" not in info.value.message


def test_binary_response_carries_the_header_length() -> None:
    out = np.ones((1, 2), dtype=np.float32)
    body, header_length = encode.response("m", "1", "r", [("out", out)], None)
    assert header_length is not None
    assert body[header_length:] == out.tobytes()
    assert json.loads(body[:header_length])["outputs"][0]["parameters"] == {"binary_data_size": 8}


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
_tensors = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["input", "x", ""]) | _json_values,
        "datatype": st.sampled_from(["FP32", "INT64", "BOOL", "FP16", "BYTES", "x"]) | _json_values,
        "shape": st.lists(st.integers(-2, 5), max_size=4) | _json_values,
        "data": st.lists(st.integers(-3, 3) | st.floats(allow_nan=False), max_size=12)
        | _json_values,
        "parameters": st.fixed_dictionaries(
            {}, optional={"binary_data_size": st.integers(-1, 40) | _json_values}
        )
        | _json_values,
    },
)
_requests = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=4) | _json_values,
        "inputs": st.lists(_tensors, max_size=3) | _json_values,
        "outputs": st.lists(
            st.fixed_dictionaries(
                {"name": st.text(max_size=3)}, optional={"parameters": _json_values}
            )
        )
        | _json_values,
        "parameters": _json_values,
    },
)


@settings(max_examples=400, deadline=None)
@given(
    doc=_requests,
    tail=st.binary(max_size=48),
    header_length=st.none() | st.integers(-2, 400),
    garbage=st.booleans(),
)
def test_fuzzed_requests_raise_nothing_but_bad_request(
    doc: dict[str, Any], tail: bytes, header_length: int | None, garbage: bool
) -> None:
    body = json.dumps(doc).encode() + tail if not garbage else tail
    if header_length == 0 and not garbage:
        header_length = len(body) - len(tail)
    try:
        request = codec.decode(body, header_length)
    except BadRequest as exc:
        assert "\n" not in exc.message
    else:
        assert all(isinstance(a, np.ndarray) for a in request.inputs.values())
