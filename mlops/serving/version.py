"""A loaded model version: its session, batcher and counters, and request validation."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from mlops.serving import dtypes
from mlops.serving.batcher import Batcher, Feeds
from mlops.serving.codec import InferRequest
from mlops.serving.errors import BadRequest
from mlops.serving.session import Session
from mlops.serving.settings import VersionSettings
from mlops.serving.stats import VersionStats


class State(StrEnum):
    LOADING = "LOADING"
    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"


class ModelVersion:
    __slots__ = ("batcher", "name", "output_names", "session", "settings", "stats", "version")

    def __init__(
        self,
        name: str,
        version: str,
        session: Session,
        batcher: Batcher,
        stats: VersionStats,
    ) -> None:
        self.name = name
        self.version = version
        self.session = session
        self.settings: VersionSettings = session.settings
        self.batcher = batcher
        self.stats = stats
        self.output_names = frozenset(o.name for o in self.settings.outputs)

    def metadata(self, versions: list[str]) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": versions,
            "platform": "onnxruntime_onnx",
            "inputs": [t.metadata() for t in self.settings.inputs],
            "outputs": [t.metadata() for t in self.settings.outputs],
            # Not in the V2 metadata schema; lets a client size its batches (Triton's config
            # endpoint carries the same field).
            "max_batch_size": self.settings.batching.max_batch_size,
        }

    def prepare(self, request: InferRequest) -> tuple[Feeds, int]:
        """Check decoded tensors against the signature; returns the feeds and the batch rows."""
        specs = self.settings.inputs
        inputs = request.inputs
        if len(inputs) != len(specs):
            raise BadRequest(f"expected inputs {[s.name for s in specs]}, got {sorted(inputs)}")
        rows = -1
        for spec in specs:
            array = inputs.get(spec.name)
            if array is None:
                raise BadRequest(f"missing input '{spec.name}'")
            if request.datatypes[spec.name] != spec.datatype:
                raise BadRequest(
                    f"input '{spec.name}' is {request.datatypes[spec.name]}, "
                    f"the model expects {spec.datatype}"
                )
            shape = array.shape
            if len(shape) != len(spec.shape) or any(
                want not in (-1, got) for want, got in zip(spec.shape, shape, strict=True)
            ):
                raise BadRequest(
                    f"input '{spec.name}' has shape {list(shape)}, the model expects "
                    f"{list(spec.shape)}"
                )
            if (
                not spec.allow_nan
                and array.dtype.kind == "f"
                and spec.name not in request.finite
                and not _finite(array)
            ):
                raise BadRequest(f"input '{spec.name}' contains NaN or infinity")
            if shape:
                if rows not in (-1, shape[0]):
                    raise BadRequest("inputs disagree on the batch dimension")
                rows = shape[0]
        if rows < 0:
            rows = 1  # scalar inputs only: one request, never merged (it has no batch dimension)
        # Zero rows stay zero: the batcher runs such a request alone (an empty result); counted
        # as one row, it used to shift the split of a merged batch onto its neighbours.
        max_rows = self.settings.batching.max_batch_size
        if max_rows > 1 and rows > max_rows:
            raise BadRequest(f"batch of {rows} exceeds max_batch_size {max_rows}")
        if request.outputs is not None:
            for name in request.outputs:
                if name not in self.output_names:
                    raise BadRequest(f"unknown output '{name}'")
        return inputs, rows


_finite = dtypes.finite  # the name this module used to define
