"""The engine's parsers of request bytes: the V2 JSON and binary tensor decoder (codec.py), its
large-body path through the decoder process protocol (intake.py), admin bodies (schema.py)
and JSON bodies (http.json_body). They answer a value or BadRequest (400), never a 500."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import BaseModel

from mlops.serving import codec, dtypes, http, intake, schema
from mlops.serving.codec import InferRequest
from mlops.serving.errors import BadRequest
from tests.fuzz import oracle
from tests.fuzz.profiles import TIMEOUT_S, budget

pytestmark = pytest.mark.timeout(TIMEOUT_S)

DATATYPES = sorted(dtypes.V2_TO_NUMPY)


def _decode(body: bytes, header_length: int | None) -> InferRequest:
    return oracle.parse(lambda: codec.decode(body, header_length))


def _via_decoder_process(body: bytes, header_length: int | None) -> InferRequest:
    """What a large body goes through: the decoder process's reply, read back by the worker."""
    parts = intake._reply(body, header_length)
    meta_len, data_len = intake._REPLY.unpack(parts[0])
    meta = orjson.loads(bytes(parts[1]))
    data = bytearray(b"".join(bytes(p) for p in parts[2:]))
    assert len(data) == data_len and len(bytes(parts[1])) == meta_len
    result = intake._from_reply(meta, data)
    if isinstance(result, Exception):
        raise result
    return result


def _same(a: InferRequest, b: InferRequest) -> None:
    assert (a.id, a.outputs, a.binary_outputs, a.binary_all) == (
        b.id, b.outputs, b.binary_outputs, b.binary_all,
    )  # fmt: skip
    assert a.datatypes == b.datatypes and list(a.inputs) == list(b.inputs)
    for name, array in a.inputs.items():
        other = b.inputs[name]
        assert array.dtype == other.dtype and array.shape == other.shape
        assert np.array_equal(array, other, equal_nan=array.dtype.kind == "f")


def _both_paths(body: bytes, header_length: int | None) -> InferRequest | None:
    """Decode inline and through the decoder process protocol: the same request or the same
    refusal."""
    try:
        inline = _decode(body, header_length)
    except oracle.Refused as exc:
        with pytest.raises(BadRequest) as caught:
            _via_decoder_process(body, header_length)
        assert caught.value.message == str(exc)
        return None
    _same(inline, _via_decoder_process(body, header_length))
    return inline


# -- bytes and near-requests --------------------------------------------------------------------


@budget(400)
@given(body=st.binary(max_size=1024), header_length=st.none() | st.integers(-3, 1100))
@example(body=b"[" * 5000, header_length=None)
@example(body=b'{"inputs": [{"name": "a", "datatype": "FP32", "shape": [1]}]}', header_length=2)
def test_any_bytes_decode_or_get_400(body: bytes, header_length: int | None) -> None:
    _both_paths(body, header_length)


_shapes = st.lists(
    st.integers(-2, 5) | st.sampled_from([True, 2**31, 2**40, 1.5, "1", None]), max_size=5
)
_datatype = st.sampled_from(DATATYPES) | st.sampled_from(["BYTES", "fp32", "", "INT128"])
_data = st.recursive(oracle.json_scalars, lambda inner: st.lists(inner, max_size=6), max_leaves=40)
_params = st.none() | st.fixed_dictionaries(
    {},
    optional={
        "binary_data_size": st.integers(-2, 64) | st.booleans() | st.text(max_size=3),
        "binary_data_output": st.booleans() | st.integers(0, 2),
        "binary_data": st.booleans() | st.none(),
        "classification": st.integers(0, 3),
    },
)
_inputs = st.lists(
    st.fixed_dictionaries(
        {"name": st.sampled_from(["a", "b", "c"]) | st.integers(0, 2)},
        optional={
            "datatype": _datatype,
            "shape": _shapes,
            "data": _data,
            "parameters": _params | oracle.json_values,
        },
    ),
    max_size=4,
)
_outputs = st.none() | st.lists(
    st.fixed_dictionaries(
        {"name": st.sampled_from(["x", "y"]) | st.integers()}, optional={"parameters": _params}
    ),
    max_size=3,
)


@st.composite
def near_requests(draw: st.DrawFn) -> tuple[bytes, int | None]:
    doc: dict[str, Any] = {"inputs": draw(_inputs | oracle.json_values)}
    for key, value in (
        ("id", st.text(max_size=8) | st.integers()),
        ("outputs", _outputs),
        ("parameters", _params),
    ):
        if draw(st.booleans()):
            doc[key] = draw(value)
    header = json.dumps(doc).encode()
    if not draw(st.booleans()):
        return header, None
    tail = draw(st.binary(max_size=96))
    return header + tail, len(header) + draw(st.sampled_from([0, 0, 0, -1, 1]))


@budget(600)
@given(request=near_requests())
@example(
    request=(
        b'{"inputs": [{"name": "a", "datatype": "INT8", "shape": [2], "data": [1, 1e400]}]}',
        None,
    )
)
def test_near_requests_decode_to_their_declared_shape_or_get_400(
    request: tuple[bytes, int | None],
) -> None:
    body, header_length = request
    decoded = _both_paths(body, header_length)
    if decoded is None:
        return
    doc = json.loads(body[:header_length] if header_length else body)
    for item in doc["inputs"]:
        array = decoded.inputs[item["name"]]
        assert array.dtype == dtypes.V2_TO_NUMPY[item["datatype"]]
        assert list(array.shape) == item["shape"]


# -- valid tensors: decoding gives back exactly what was sent ----------------------------------


@st.composite
def tensors(draw: st.DrawFn) -> tuple[str, np.ndarray[Any, Any]]:
    datatype = draw(st.sampled_from(DATATYPES))
    dtype = dtypes.V2_TO_NUMPY[datatype]
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=0, max_size=3)))
    count = int(np.prod(shape, dtype=np.int64))
    if dtype.kind == "b":
        values: Any = draw(st.lists(st.booleans(), min_size=count, max_size=count))
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)  # type: ignore[type-var]
        values = draw(
            st.lists(st.integers(int(info.min), int(info.max)), min_size=count, max_size=count)
        )
    else:
        width = {2: 16, 4: 32, 8: 64}[dtype.itemsize]
        floats = st.floats(allow_nan=False, allow_infinity=False, width=width)  # type: ignore[arg-type]
        values = draw(st.lists(floats, min_size=count, max_size=count))
    return datatype, np.array(values, dtype=dtype).reshape(shape)


@budget(400)
# Found by this test: the decoder process sent a scalar (shape []) back as shape [1].
@example(inputs=[("BOOL", np.array(False))], binary=[False] * 4)
@example(inputs=[("FP32", np.array(1.5, dtype=np.float32))], binary=[True] * 4)
@given(
    inputs=st.lists(tensors(), min_size=1, max_size=4),
    binary=st.lists(st.booleans(), min_size=4, max_size=4),
)
def test_valid_tensors_decode_to_exactly_what_was_sent(
    inputs: list[tuple[str, np.ndarray[Any, Any]]], binary: list[bool]
) -> None:
    items, blobs = [], []
    for i, (datatype, array) in enumerate(inputs):
        item: dict[str, Any] = {"name": f"in{i}", "datatype": datatype, "shape": list(array.shape)}
        if binary[i]:
            blob = array.tobytes()
            item["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            item["data"] = array.ravel().tolist()
        items.append(item)
    header = orjson.dumps({"inputs": items})
    body = header + b"".join(blobs)
    decoded = _both_paths(body, len(header) if blobs else None)
    assert decoded is not None
    for i, (datatype, array) in enumerate(inputs):
        got = decoded.inputs[f"in{i}"]
        assert decoded.datatypes[f"in{i}"] == datatype
        assert got.dtype == array.dtype and got.shape == array.shape
        assert np.array_equal(got, array), f"in{i} {datatype}: {got!r} != {array!r}"


# -- admin bodies --------------------------------------------------------------------------------

_names = st.text(max_size=12) | st.sampled_from(["1.0.0", "a", "..", "a/b", "x" * 130])
_routing = st.fixed_dictionaries(
    {},
    optional={
        "weights": st.dictionaries(
            _names, st.integers(-2, 2**21) | oracle.json_scalars, max_size=4
        ),
        "shadow": st.none()
        | st.fixed_dictionaries({"version": _names}, optional={"percent": oracle.json_scalars}),
        "generation": oracle.json_scalars,
    },
)
_BODIES: list[tuple[type[BaseModel], st.SearchStrategy[Any]]] = [
    (schema.RoutingBody, _routing),
    (
        schema.RepositoryBody,
        st.fixed_dictionaries(
            {},
            optional={
                "parameters": st.fixed_dictionaries(
                    {},
                    optional={
                        "version": _names | oracle.json_scalars,
                        "settings": oracle.json_values,
                        "sha256": st.text(alphabet="0123456789abcdefX", max_size=66),
                    },
                )
            },
        ),
    ),
    (
        schema.PersistedRouting,
        st.fixed_dictionaries(
            {},
            optional={
                "generation": oracle.json_scalars,
                "generations": st.dictionaries(_names, oracle.json_scalars, max_size=3),
                "tables": st.dictionaries(_names, _routing, max_size=3),
            },
        ),
    ),
]


@budget(300)
@given(which=st.integers(0, len(_BODIES) - 1), data=st.data())
def test_admin_bodies_parse_within_bounds_or_get_400(which: int, data: st.DataObject) -> None:
    model, structured = _BODIES[which]
    raw = data.draw(structured | oracle.json_values)
    try:
        parsed: BaseModel = oracle.parse(lambda: schema.parse(model, raw, "body"))
    except oracle.Refused:
        return
    if isinstance(parsed, schema.RoutingBody):
        assert len(parsed.weights) <= schema.MAX_VERSIONS
        for name, weight in parsed.weights.items():
            assert schema.check_name(name) == name and 0 <= weight <= schema.MAX_WEIGHT
        assert parsed.generation is None or 0 <= parsed.generation <= schema.MAX_GENERATION


@budget(200)
@given(body=st.binary(max_size=256) | oracle.json_values.map(lambda v: json.dumps(v).encode()))
@example(body=b"[" * 100_000)
def test_json_bodies_parse_or_get_400(body: bytes) -> None:
    with contextlib.suppress(oracle.Refused):
        oracle.parse(lambda: http.json_body(body))
