"""Encoding of V2 inference responses, JSON or with the binary tensor extension."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from mlops.serving import dtypes

_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def response(
    model: str,
    version: str,
    request_id: str,
    outputs: list[tuple[str, np.ndarray[Any, Any]]],
    binary: frozenset[str] | None,
) -> tuple[bytes, int | None]:
    """Body and, when any output is binary, the JSON header length.

    `binary` names the outputs to send as raw bytes; None means every output.
    """
    tensors: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, array in outputs:
        tensor: dict[str, Any] = {
            "name": name,
            "datatype": dtypes.v2_name(array.dtype),
            "shape": list(array.shape),
        }
        if binary is None or name in binary:
            raw = np.ascontiguousarray(array).tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            # orjson writes numpy arrays natively, far faster than tolist() + dumps; it has
            # no float16, so those are widened (exactly) first.
            if array.dtype == np.float16:
                array = array.astype(np.float32)
            tensor["data"] = np.ascontiguousarray(array).reshape(-1)
        tensors.append(tensor)
    header = orjson.dumps(
        {"model_name": model, "model_version": version, "id": request_id, "outputs": tensors},
        option=_NUMPY,
    )
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)
