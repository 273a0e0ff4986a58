"""A version's `settings.json`: signature, batching and warm-up, validated once at load time."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlops.serving import dtypes
from mlops.serving.errors import BadRequest


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1 = any size
    allow_nan: bool = False

    @property
    def dtype(self) -> np.dtype[np.generic]:
        return dtypes.V2_TO_NUMPY[self.datatype]

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True, slots=True)
class Batching:
    max_batch_size: int = 0  # 0 or 1 = no batching
    max_queue_delay_ms: float = 0.0
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_size: int = 256
    # Batches of one version that may run at once. 0 = automatic: one when batching (keeps
    # batches large on a small machine), else as many as there are inference threads.
    max_concurrent_batches: int = 0

    @property
    def enabled(self) -> bool:
        return self.max_batch_size > 1


@dataclass(frozen=True, slots=True)
class VersionSettings:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batching: Batching = field(default_factory=Batching)
    warmup_requests: int = 1
    classification: bool = False
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


def parse(raw: Any) -> VersionSettings:
    """Validate a settings object; every problem is a one-line BadRequest."""
    if not isinstance(raw, dict):
        raise BadRequest("settings must be a JSON object")
    signature = raw.get("signature")
    if not isinstance(signature, dict):
        raise BadRequest("settings.signature is required: {inputs: [...], outputs: [...]}")
    inputs = _tensors(signature.get("inputs"), "inputs")
    outputs = _tensors(signature.get("outputs"), "outputs")
    batching = _batching(raw.get("batching") or {})
    warmup = raw.get("warmup") or {}
    if not isinstance(warmup, dict):
        raise BadRequest("settings.warmup must be an object")
    warmup_requests = _int(warmup.get("requests", 1), "warmup.requests", minimum=0)
    classification = raw.get("classification")
    if classification is None:
        classification = len(outputs[0].shape) == 2
    if not isinstance(classification, bool):
        raise BadRequest("settings.classification must be true or false")
    return VersionSettings(inputs, outputs, batching, warmup_requests, classification, raw)


def _tensors(raw: Any, where: str) -> tuple[TensorSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise BadRequest(f"settings.signature.{where} must be a non-empty list")
    specs = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise BadRequest(f"settings.signature.{where}[{i}] must be an object")
        name, datatype, shape = item.get("name"), item.get("dtype"), item.get("shape")
        if not isinstance(name, str) or not name:
            raise BadRequest(f"settings.signature.{where}[{i}].name must be a string")
        if datatype not in dtypes.V2_TO_NUMPY:
            raise BadRequest(f"settings.signature.{where}[{i}].dtype {datatype!r} is unsupported")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape
        ):
            raise BadRequest(f"settings.signature.{where}[{i}].shape must be a list of ints >= -1")
        specs.append(TensorSpec(name, datatype, tuple(shape), bool(item.get("allow_nan", False))))
    return tuple(specs)


def _batching(raw: Any) -> Batching:
    if not isinstance(raw, dict):
        raise BadRequest("settings.batching must be an object")
    delay = raw.get("max_queue_delay_ms", 0)
    if not isinstance(delay, int | float) or isinstance(delay, bool) or not 0 <= delay < 60_000:
        raise BadRequest("batching.max_queue_delay_ms must be a number in [0, 60000)")
    if not math.isfinite(delay):
        raise BadRequest("batching.max_queue_delay_ms must be finite")
    preferred = raw.get("preferred_batch_sizes", [])
    if not isinstance(preferred, list):
        raise BadRequest("batching.preferred_batch_sizes must be a list of ints")
    return Batching(
        max_batch_size=_int(raw.get("max_batch_size", 0), "batching.max_batch_size", minimum=0),
        max_queue_delay_ms=float(delay),
        preferred_batch_sizes=tuple(
            sorted(_int(p, "batching.preferred_batch_sizes", minimum=1) for p in preferred)
        ),
        max_queue_size=_int(raw.get("max_queue_size", 256), "batching.max_queue_size", minimum=1),
        max_concurrent_batches=_int(
            raw.get("max_concurrent_batches", 0), "batching.max_concurrent_batches", minimum=0
        ),
    )


def _int(value: Any, where: str, *, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise BadRequest(f"{where} must be an integer >= {minimum}")
    return value
