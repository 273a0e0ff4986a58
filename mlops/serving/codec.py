"""Decoding of V2 inference requests: JSON tensors and the binary tensor extension.

`decode` turns bytes into named numpy arrays and never raises anything but BadRequest, so a
malformed body can never take a worker down or be counted as a model error.

JSON data must fit the declared datatype exactly: integers within its range (no wrapping),
floats that stay finite in it (no overflow to infinity), JSON booleans only for BOOL and only
booleans for BOOL. The checks cost one reduction or two per tensor, and only when the parsed
values can be out of range for the datatype.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from mlops.serving import dtypes
from mlops.serving.errors import BadRequest

MAX_RANK = 16
_SHORT = 48  # elements: up to this a range check in Python beats numpy's (measured)
# JSON values a V2 datatype accepts, by numpy kind (b=bool, i/u=integers, f=floats): booleans
# only for BOOL, integers for integer and float types, floats only for float types.
_ACCEPTED_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}


@dataclass(slots=True)
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray[Any, Any]]
    datatypes: dict[str, str]
    outputs: list[str] | None  # requested output names in order; None = every output
    binary_outputs: frozenset[str]
    binary_all: bool  # request-level `binary_data_output`
    # Float inputs known to hold no NaN or infinity (JSON ones, checked here), so that request
    # validation need not scan them again.
    finite: frozenset[str] = field(default=frozenset())


def decode(body: bytes | bytearray | memoryview, header_length: int | None = None) -> InferRequest:
    """Parse a V2 request body; `header_length` is `Inference-Header-Content-Length`."""
    try:
        return _decode(body, header_length)
    except BadRequest:
        raise
    except (ValueError, TypeError, OverflowError, MemoryError) as exc:
        # Last line of defence: numpy and orjson edge cases still answer 400, never 500.
        raise BadRequest(f"malformed request: {type(exc).__name__}: {exc}") from None


def _decode(body: bytes | bytearray | memoryview, header_length: int | None) -> InferRequest:
    header: bytes | bytearray
    binary: bytes | memoryview
    if header_length is None:
        header, binary = (bytes(body) if isinstance(body, memoryview) else body), b""
    else:
        if not 0 < header_length <= len(body):
            raise BadRequest("Inference-Header-Content-Length is outside the body")
        # Tensors are views of the body: no copy of what may be most of a large request.
        view = memoryview(body)
        header, binary = bytes(view[:header_length]), view[header_length:]
    try:
        doc = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest("the request must be a JSON object")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("'id' must be a string")
    params = _params(doc.get("parameters"), "parameters")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise BadRequest("'inputs' must be a non-empty list")
    inputs: dict[str, np.ndarray[Any, Any]] = {}
    datatypes: dict[str, str] = {}
    finite: list[str] = []
    # JSON booleans can hide among numbers (numpy turns [true, 2.5] into [1.0, 2.5]); only a
    # header that spells one anywhere needs the element-wise look.
    maybe_bools = b"true" in header or b"false" in header
    offset = 0
    for i, item in enumerate(raw_inputs):
        if not isinstance(item, dict):
            raise BadRequest(f"inputs[{i}] must be an object")
        name, datatype = item.get("name"), item.get("datatype")
        if not isinstance(name, str):
            raise BadRequest(f"inputs[{i}].name must be a string")
        if name in inputs:
            raise BadRequest(f"input '{name}' is given twice")
        dtype = dtypes.V2_TO_NUMPY.get(datatype) if isinstance(datatype, str) else None
        if dtype is None or not isinstance(datatype, str):
            raise BadRequest(f"input '{name}' has unsupported datatype {datatype!r}")
        shape = _shape(item.get("shape"), name)
        count = 1
        for d in shape:  # plain ints: numpy's prod costs microseconds on a tiny shape
            count *= d
        size = _params(item.get("parameters"), f"input '{name}' parameters").get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise BadRequest(f"input '{name}' binary_data_size must be a non-negative int")
            if offset + size > len(binary):
                raise BadRequest(f"input '{name}' binary data runs past the end of the body")
            if size != count * dtype.itemsize:
                raise BadRequest(
                    f"input '{name}' has {size} bytes, shape {list(shape)} needs "
                    f"{count * dtype.itemsize}"
                )
            array = np.frombuffer(binary, dtype=dtype, count=count, offset=offset).reshape(shape)
            offset += size
        else:
            array = _json_tensor(item.get("data"), dtype, datatype, shape, count, name, maybe_bools)
            if dtype.kind == "f":
                finite.append(name)  # JSON has no NaN or infinity, and the range is checked
        inputs[name] = array
        datatypes[name] = datatype
    if offset != len(binary):
        raise BadRequest("binary data left over after the last input")
    outputs, binary_outputs = _outputs(doc.get("outputs"))
    binary_all = params.get("binary_data_output", False)
    if not isinstance(binary_all, bool):
        raise BadRequest("binary_data_output must be true or false")
    return InferRequest(
        request_id, inputs, datatypes, outputs, binary_outputs, binary_all, frozenset(finite)
    )


def _params(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadRequest(f"{where} must be an object")
    return raw


def _shape(raw: Any, name: str) -> tuple[int, ...]:
    if not isinstance(raw, list) or len(raw) > MAX_RANK:
        raise BadRequest(f"input '{name}' shape must be a list of at most {MAX_RANK} ints")
    for d in raw:
        if not isinstance(d, int) or isinstance(d, bool) or not 0 <= d < 2**31:
            raise BadRequest(f"input '{name}' shape has an invalid dimension {d!r}")
    total = 1
    for d in raw:
        total *= d
    if total >= 2**31:
        raise BadRequest(f"input '{name}' shape {raw} is too large")
    return tuple(raw)


def _json_tensor(
    data: Any,
    dtype: np.dtype[Any],
    datatype: str,
    shape: tuple[int, ...],
    count: int,
    name: str,
    maybe_bools: bool = True,
) -> np.ndarray[Any, Any]:
    if not isinstance(data, list):
        raise BadRequest(f"input '{name}' needs 'data' (a list) or binary_data_size")
    try:
        array = np.array(data)
    except (ValueError, TypeError, OverflowError):
        raise BadRequest(f"input '{name}' data is ragged or not numeric") from None
    if array.size != count:
        raise BadRequest(
            f"input '{name}' has {array.size} elements, shape {list(shape)} needs {count}"
        )
    if not array.size:
        return array.astype(dtype).reshape(shape)
    kind = array.dtype.kind
    if kind == "f" and dtype.kind in "iu" and not _contains(data, array.ndim, float):
        # Integers only, but some beyond int64: numpy widened them all to float64.
        array = _wide_integers(data, dtype, datatype, name)
        kind = "u"
    if kind not in _ACCEPTED_KINDS.get(dtype.kind, ""):
        raise BadRequest(f"input '{name}' data does not match datatype {datatype}")
    if maybe_bools and kind != "b" and _contains(data, array.ndim, bool):
        raise BadRequest(f"input '{name}' data mixes booleans into {datatype} numbers")
    if array.dtype != dtype and _may_overflow(kind, dtype):
        low, high = _RANGES[dtype]
        if dtype.kind == "f" and array.ndim == 1 and array.size <= _SHORT:
            # A short flat list of numbers: two C-level passes over it beat a numpy reduction.
            outside = max(data) > high or min(data) < -high
        elif dtype.kind == "f":  # symmetric: one reduction
            outside = np.abs(array).max() > high
        else:
            outside = array.min() < low or array.max() > high
        if outside:
            raise _out_of_range(name, datatype)
    return array.astype(dtype, copy=False).reshape(shape)


def _may_overflow(kind: str, dtype: np.dtype[Any]) -> bool:
    """Whether parsed values of this numpy kind can fall outside `dtype`: any integer type,
    FP32 from floats, FP16 from anything (JSON floats are finite float64s)."""
    if dtype not in _RANGES:
        return False
    return dtype.kind != "f" or kind == "f" or dtype.itemsize == 2


def _out_of_range(name: str, datatype: str) -> BadRequest:
    low, high = _RANGES[dtypes.V2_TO_NUMPY[datatype]]
    return BadRequest(f"input '{name}' has values outside the range of {datatype} [{low}, {high}]")


def _range_of(dtype: np.dtype[Any]) -> tuple[int | float, int | float]:
    if dtype.kind == "f":
        return float(np.finfo(dtype).min), float(np.finfo(dtype).max)
    return int(np.iinfo(dtype).min), int(np.iinfo(dtype).max)


# The values each datatype holds, for those a parsed JSON number can fall outside of.
_RANGES: dict[np.dtype[Any], tuple[int | float, int | float]] = {
    d: _range_of(d) for d in dtypes.V2_TO_NUMPY.values() if d.kind in "iuf" and d != np.float64
}


def _contains(data: list[Any], depth: int, kind: type) -> bool:
    """Whether any element of (nested) `data` has exactly this Python type."""
    flat: Any = data
    for _ in range(depth - 1):
        flat = itertools.chain.from_iterable(flat)
    return kind in map(type, flat)


def _wide_integers(
    data: list[Any], dtype: np.dtype[Any], datatype: str, name: str
) -> np.ndarray[Any, Any]:
    """Integers some of which need 64 bits unsigned: exact for UINT64 if all fit, else 400."""
    if dtype == np.uint64:
        try:
            return np.array(data, dtype=np.uint64)
        except OverflowError:
            pass
    raise _out_of_range(name, datatype)


def _outputs(raw: Any) -> tuple[list[str] | None, frozenset[str]]:
    if raw is None:
        return None, frozenset()
    if not isinstance(raw, list):
        raise BadRequest("'outputs' must be a list")
    names: list[str] = []
    binary: set[str] = set()
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest(f"outputs[{i}] must be an object with a name")
        params = _params(item.get("parameters"), f"outputs[{i}].parameters")
        if params.get("classification"):
            raise BadRequest("the classification extension is not supported")
        flag = params.get("binary_data", False)
        if not isinstance(flag, bool):
            raise BadRequest(f"outputs[{i}].parameters.binary_data must be true or false")
        if item["name"] in names:
            raise BadRequest(f"output '{item['name']}' is requested twice")
        names.append(item["name"])
        if flag:
            binary.add(item["name"])
    return names, frozenset(binary)
