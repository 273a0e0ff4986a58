"""Decoding of V2 inference requests: JSON tensors and the binary tensor extension.

`decode` turns bytes into named numpy arrays and never raises anything but BadRequest, so a
malformed body can never take a worker down or be counted as a model error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from mlops.serving import dtypes
from mlops.serving.errors import BadRequest

MAX_RANK = 16
# JSON numbers a V2 datatype accepts, by numpy kind (b=bool, i/u=integers, f=floats).
_ACCEPTED_KINDS = {"b": "b", "i": "biu", "u": "biu", "f": "biuf"}


@dataclass(slots=True)
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray[Any, Any]]
    datatypes: dict[str, str]
    outputs: list[str] | None  # requested output names in order; None = every output
    binary_outputs: frozenset[str]
    binary_all: bool  # request-level `binary_data_output`


def decode(body: bytes, header_length: int | None = None) -> InferRequest:
    """Parse a V2 request body; `header_length` is `Inference-Header-Content-Length`."""
    try:
        return _decode(body, header_length)
    except BadRequest:
        raise
    except (ValueError, TypeError, OverflowError, MemoryError) as exc:
        # Last line of defence: numpy and orjson edge cases still answer 400, never 500.
        raise BadRequest(f"malformed request: {type(exc).__name__}: {exc}") from None


def _decode(body: bytes, header_length: int | None) -> InferRequest:
    if header_length is None:
        header, binary = body, b""
    else:
        if not 0 < header_length <= len(body):
            raise BadRequest("Inference-Header-Content-Length is outside the body")
        header, binary = body[:header_length], body[header_length:]
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
            array = _json_tensor(item.get("data"), dtype, datatype, shape, count, name)
        inputs[name] = array
        datatypes[name] = datatype
    if offset != len(binary):
        raise BadRequest("binary data left over after the last input")
    outputs, binary_outputs = _outputs(doc.get("outputs"))
    binary_all = params.get("binary_data_output", False)
    if not isinstance(binary_all, bool):
        raise BadRequest("binary_data_output must be true or false")
    return InferRequest(request_id, inputs, datatypes, outputs, binary_outputs, binary_all)


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
    data: Any, dtype: np.dtype[Any], datatype: str, shape: tuple[int, ...], count: int, name: str
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
    if array.size and array.dtype.kind not in _ACCEPTED_KINDS.get(dtype.kind, ""):
        raise BadRequest(f"input '{name}' data does not match datatype {datatype}")
    return array.astype(dtype, copy=False).reshape(shape)


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
        names.append(item["name"])
        if flag:
            binary.add(item["name"])
    return names, frozenset(binary)
