"""One onnxruntime session per model version, checked against its declared signature."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort

from mlops.serving import dtypes
from mlops.serving.errors import BadRequest, ModelFailure
from mlops.serving.settings import TensorSpec, VersionSettings

Feeds = dict[str, np.ndarray[Any, Any]]


class Session:
    """A loaded model. `run` is thread-safe and releases the GIL inside onnxruntime."""

    def __init__(self, path: str, settings: VersionSettings, intra_op_threads: int) -> None:
        options = ort.SessionOptions()
        # Many versions share a small machine: one intra-op thread each, no spinning, so
        # concurrency comes from the engine's thread pool and idle versions cost no CPU.
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                path, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BadRequest(f"cannot load {path}: {_first_line(exc)}") from None
        self.settings = settings
        self._check(settings)
        self.output_names = [o.name for o in settings.outputs]

    def _check(self, settings: VersionSettings) -> None:
        actual = {i.name: i for i in self._session.get_inputs()}
        for spec in settings.inputs:
            _check_tensor(spec, actual.get(spec.name), "input")
        if len(actual) != len(settings.inputs):
            raise BadRequest(f"model inputs {sorted(actual)} differ from the signature")
        outputs = {o.name: o for o in self._session.get_outputs()}
        for spec in settings.outputs:
            _check_tensor(spec, outputs.get(spec.name), "output")

    def run(self, feeds: Feeds) -> list[np.ndarray[Any, Any]]:
        try:
            result: list[np.ndarray[Any, Any]] = self._session.run(self.output_names, feeds)
        except Exception as exc:
            raise ModelFailure(f"model failed: {_first_line(exc)}") from None
        return result

    def warm_up(self, requests: int) -> None:
        """Run zero inputs through the graph so the first real request pays no setup cost."""
        feeds = {
            spec.name: np.zeros(tuple(1 if d < 0 else d for d in spec.shape), dtype=spec.dtype)
            for spec in self.settings.inputs
        }
        for _ in range(requests):
            try:
                self.run(feeds)
            except ModelFailure:
                # Zeros may be outside a model's domain (e.g. a guarded reshape); the graph
                # still got initialised, which is what warm-up is for.
                return


def _check_tensor(spec: TensorSpec, actual: Any, kind: str) -> None:
    if actual is None:
        raise BadRequest(f"signature {kind} '{spec.name}' is not in the model")
    datatype = dtypes.ONNX_TO_V2.get(actual.type)
    if datatype != spec.datatype:
        raise BadRequest(
            f"signature {kind} '{spec.name}' is {spec.datatype}, the model has {actual.type}"
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
