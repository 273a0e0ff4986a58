"""Large ONNX files: point onnxruntime at the weights inside `model.onnx` instead of copying.

A single-file ONNX model keeps each weight as the `raw_data` bytes of an initializer in one
protobuf. Creating a session from it parses the whole file and copies every weight into fresh
memory (and MLAS pre-packs big MatMul weights into a second copy): seconds for 500 MB. This
module reads only the protobuf framing (tags and lengths, never the weight bytes) and builds a
small copy of the model in memory whose large initializers are ONNX *external data* that
refer to byte ranges of the original `model.onnx`. onnxruntime then memory-maps those ranges:
the weights come from the page cache, no parse and no copy. The file on disk is not changed
(the controller checks its sha256), and anything unexpected falls back to the normal load.

Only the top-level graph's initializers stored as `raw_data` are referenced; everything else
(small tensors, subgraphs, typed-field tensors) stays inline, so the result is the same model.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path

MIN_EXTERNAL_BYTES = 1 << 20  # initializers smaller than this stay inline: not worth a mapping

# Protobuf field numbers (onnx.proto3): ModelProto.graph, GraphProto.initializer and the
# TensorProto fields this module reads or writes.
_MODEL_GRAPH = 7
_GRAPH_INITIALIZER = 5
_TENSOR_RAW_DATA = 9
_TENSOR_EXTERNAL_DATA = 13
_TENSOR_DATA_LOCATION = 14
_LEN = 2  # wire type of length-delimited fields


class Unsupported(Exception):
    """The file is not in the shape this module handles; load it the ordinary way."""


def external_model(path: Path, min_bytes: int = MIN_EXTERNAL_BYTES) -> tuple[bytes, int]:
    """The model's bytes with its large weights as external data in `path` itself.

    Returns the rewritten model and how many initializers now refer to the file (0: nothing
    to gain, use the file as is). Raises Unsupported for anything it does not recognise.
    """
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        view = memoryview(data)
        try:
            return _rewrite(view, path.name, min_bytes)
        finally:
            view.release()


def _rewrite(data: memoryview, location: str, min_bytes: int) -> tuple[bytes, int]:
    fields = list(_fields(data, 0, len(data)))
    graphs = [f for f in fields if f[0] == _MODEL_GRAPH]
    if len(graphs) != 1 or graphs[0][1] != _LEN:
        raise Unsupported("expected exactly one graph")
    referenced = 0
    graph_parts: list[bytes] = []
    _, _, g_start, g_end, _ = graphs[0]
    for number, wire, start, end, head in _fields(data, g_start, g_end):
        if number == _GRAPH_INITIALIZER and wire == _LEN and end - start >= min_bytes:
            tensor = _external_tensor(data, start, end, location)
            if tensor is not None:
                graph_parts.append(_tag(number, _LEN) + _varint(len(tensor)) + tensor)
                referenced += 1
                continue
        graph_parts.append(bytes(data[head:end]))
    if referenced == 0:
        return b"", 0
    graph = b"".join(graph_parts)
    parts: list[bytes] = []
    for number, _, _, end, head in fields:
        if number == _MODEL_GRAPH:
            parts.append(_tag(_MODEL_GRAPH, _LEN) + _varint(len(graph)) + graph)
        else:
            parts.append(bytes(data[head:end]))
    return b"".join(parts), referenced


def _external_tensor(data: memoryview, start: int, end: int, location: str) -> bytes | None:
    """A TensorProto whose raw_data becomes a reference to its own bytes in the file."""
    kept: list[bytes] = []
    raw: tuple[int, int] | None = None
    for number, wire, f_start, f_end, head in _fields(data, start, end):
        if number in (_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION):
            return None  # already external, or a layout this module does not rewrite
        if number == _TENSOR_RAW_DATA and wire == _LEN:
            if raw is not None:
                return None  # repeated raw_data (protobuf merge semantics): leave it alone
            raw = (f_start, f_end - f_start)
            continue
        kept.append(bytes(data[head:f_end]))
    if raw is None:
        return None  # typed fields (float_data, ...): stays inline
    offset, length = raw
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = _string_field(1, key) + _string_field(2, value)
        kept.append(_tag(_TENSOR_EXTERNAL_DATA, _LEN) + _varint(len(entry)) + entry)
    kept.append(_tag(_TENSOR_DATA_LOCATION, 0) + _varint(1))  # DataLocation.EXTERNAL
    return b"".join(kept)


def _fields(data: memoryview, pos: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """(field number, wire type, payload start, payload end, field start) of one message."""
    while pos < end:
        head = pos
        key, pos = _read_varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise Unsupported("field number 0")
        if wire == 0:
            _, pos = _read_varint(data, pos, end)
            yield number, wire, pos, pos, head
            continue
        if wire == _LEN:
            size, pos = _read_varint(data, pos, end)
            start, pos = pos, pos + size
        elif wire == 1:
            start, pos = pos, pos + 8
        elif wire == 5:
            start, pos = pos, pos + 4
        else:
            raise Unsupported(f"wire type {wire}")  # groups are not used by ONNX
        if pos > end:
            raise Unsupported("truncated field")
        yield number, wire, start, pos, head


def _read_varint(data: memoryview, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise Unsupported("bad varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _string_field(number: int, text: str) -> bytes:
    raw = text.encode()
    return _tag(number, _LEN) + _varint(len(raw)) + raw
