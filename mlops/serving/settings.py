"""A version's `settings.json`: signature, batching and warm-up, validated once at load time.

Every field is bounded (pydantic), so a load request cannot make the engine allocate without
limit or warm up forever. Batching is the spec's schema (`mlops.spec.models.Batching`: same
fields, bounds and checks) plus the engine-only `max_concurrent_batches`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mlops.serving import dtypes, schema
from mlops.serving.errors import BadRequest
from mlops.spec import engine as engine_settings
from mlops.spec import models as spec

MAX_TENSORS = 64  # inputs, and outputs, per signature
MAX_RANK = 16
MAX_DIM = 2**31 - 1
# Elements of one row of every input together (fixed dimensions, -1 counted as 1): what one
# warm-up request allocates. 2**26 FP32 elements = 256 MiB.
MAX_ROW_ELEMENTS = 2**26
MAX_WARMUP_REQUESTS = 1_000
MAX_PREFERRED_SIZES = 32
MAX_CONCURRENT_BATCHES = 256
# The spec's bound on max_batch_size, read from its schema so the two cannot drift apart.
MAX_BATCH_SIZE: int = next(
    m.le for m in spec.Batching.model_fields["max_batch_size"].metadata if hasattr(m, "le")
)

StrictInt = Annotated[int, Field(strict=True)]
Dim = Annotated[int, Field(strict=True, ge=-1, le=MAX_DIM)]


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


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Batching(spec.Batching):
    """The spec's batching plus what only the engine has. `max_batch_size` 0 or 1 = no
    batching (the engine's default 0 is what V2 metadata reports for "no batch dimension")."""

    max_batch_size: int = Field(default=0, strict=True, ge=0, le=MAX_BATCH_SIZE)
    preferred_batch_sizes: list[StrictInt] = Field(
        default_factory=list, max_length=MAX_PREFERRED_SIZES
    )
    # Batches of one version that may run at once. 0 = automatic: one when batching (keeps
    # batches large on a small machine), else as many as there are inference threads.
    max_concurrent_batches: int = Field(default=0, strict=True, ge=0, le=MAX_CONCURRENT_BATCHES)

    @field_validator("preferred_batch_sizes", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("preferred_batch_sizes")
    @classmethod
    def _sorted(cls, value: list[int]) -> list[int]:
        return sorted(value)

    @property
    def enabled(self) -> bool:
        return self.max_batch_size > 1


class _Tensor(_Strict):
    name: str = Field(min_length=1, max_length=256)
    dtype: str
    shape: list[Dim] = Field(max_length=MAX_RANK)
    allow_nan: bool = Field(default=False, strict=True)

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, value: str) -> str:
        if value not in dtypes.V2_TO_NUMPY:
            raise ValueError(
                f"{value[:40]!r} is unsupported (use one of {', '.join(dtypes.V2_TO_NUMPY)})"
            )
        return value

    def spec(self) -> TensorSpec:
        return TensorSpec(self.name, self.dtype, tuple(self.shape), self.allow_nan)


class _Signature(_Strict):
    inputs: list[_Tensor] = Field(min_length=1, max_length=MAX_TENSORS)
    outputs: list[_Tensor] = Field(min_length=1, max_length=MAX_TENSORS)

    @model_validator(mode="after")
    def _row_size(self) -> _Signature:
        elements = sum(math.prod(max(d, 1) for d in t.shape) for t in self.inputs)
        if elements > MAX_ROW_ELEMENTS:
            raise ValueError(
                f"one row of the inputs holds {elements} elements, more than the "
                f"{MAX_ROW_ELEMENTS} the engine allows"
            )
        return self


class _Warmup(_Strict):
    requests: int = Field(default=1, strict=True, ge=0, le=MAX_WARMUP_REQUESTS)


class SettingsDocument(_Strict):
    """settings.json as the engine accepts it."""

    signature: _Signature
    batching: Batching = Batching()
    warmup: _Warmup = _Warmup()
    classification: bool | None = Field(default=None, strict=True)
    # The model file's expected sha256 (the controller writes it): a mismatch fails the load.
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    # Read by the supervisor from the staged settings.json (mlops/serving/autoscale.py).
    autoscaling: engine_settings.EngineAutoscaling | None = None
    # An accelerator name: the session uses CUDA (or TensorRT) when onnxruntime has it.
    accelerator: str | None = Field(
        default=None, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    )

    @field_validator("batching", "warmup", mode="before")
    @classmethod
    def _null_is_default(cls, value: Any) -> Any:
        return {} if value is None else value


@dataclass(frozen=True, slots=True)
class VersionSettings:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batching: Batching = field(default_factory=Batching)
    warmup_requests: int = 1
    classification: bool = False
    raw: dict[str, Any] = field(default_factory=dict, compare=False)
    sha256: str | None = None
    accelerator: str | None = None


def _looks_like_classifier(first: TensorSpec) -> bool:
    # Scores per class (2-D), or one integer label per row (skl2onnx classifiers put `label`
    # first): either way agreement means the same class, not bit-close floats.
    if len(first.shape) == 2:
        return True
    return len(first.shape) == 1 and first.datatype in _LABEL_DTYPES


_LABEL_DTYPES = frozenset(
    {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "BOOL"}
)


def parse(raw: Any) -> VersionSettings:
    """Validate a settings object; every problem is a one-line BadRequest."""
    try:
        doc = SettingsDocument.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise BadRequest(f"settings: {schema.describe(exc)}") from None
    inputs = tuple(t.spec() for t in doc.signature.inputs)
    outputs = tuple(t.spec() for t in doc.signature.outputs)
    classification = doc.classification
    if classification is None:
        classification = _looks_like_classifier(outputs[0])
    return VersionSettings(
        inputs,
        outputs,
        doc.batching,
        doc.warmup.requests,
        classification,
        raw,
        doc.sha256,
        doc.accelerator,
    )
