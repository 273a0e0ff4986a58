"""V2 protocol datatypes and their numpy and ONNX equivalents."""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np

V2_TO_NUMPY: Final[dict[str, np.dtype[np.generic]]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}

NUMPY_TO_V2: Final[dict[np.dtype[np.generic], str]] = {v: k for k, v in V2_TO_NUMPY.items()}

# onnxruntime reports tensor types as strings such as "tensor(float)".
ONNX_TO_V2: Final[dict[str, str]] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
}


def v2_name(dtype: np.dtype[np.generic]) -> str:
    """The V2 name of a numpy dtype; outputs of an unknown type are reported as BYTES."""
    return NUMPY_TO_V2.get(dtype, "BYTES")


def finite(array: np.ndarray[Any, Any]) -> bool:
    """No NaN or infinity in a float array, with one reduction instead of isfinite() + all()."""
    # NaN and infinity survive a sum; a float64 sum of float32/16 values cannot overflow.
    if math.isfinite(array.sum(dtype=np.float64)):
        return True
    if array.dtype != np.float64:
        return False
    return bool(np.isfinite(array).all())  # finite float64 values may still overflow a sum
