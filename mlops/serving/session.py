"""One onnxruntime session per model version, checked against its declared signature."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from mlops.serving import dtypes, weights
from mlops.serving.errors import BadRequest, ModelFailure
from mlops.serving.settings import TensorSpec, VersionSettings

Feeds = dict[str, np.ndarray[Any, Any]]
log = logging.getLogger("mlops.serving")

# Above this size a model file is loaded without weight pre-packing and with its weights
# memory-mapped from the file (see weights.py): session creation then takes milliseconds
# instead of seconds, and the loader thread stops competing with serving for the core.
LARGE_MODEL_BYTES = 64 << 20
CALIBRATION_RUNS = 3  # timed runs after warm-up that seed the version's cost estimate
CALIBRATION_MAX_SECONDS = 0.01  # models slower than this are not calibrated (not worth it)
# Warm-up stops after this long whatever `warmup.requests` says: the version is warm by then,
# and a load must answer (and a shutdown must not wait) in bounded time.
WARMUP_BUDGET_SECONDS = 30.0


# Tried in this order when a version's settings name an accelerator; CPU stays last, for the
# operators the accelerated provider does not implement.
ACCELERATED_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
CPU_PROVIDER = "CPUExecutionProvider"


def execution_providers(accelerator: str | None, available: Sequence[str]) -> list[str]:
    """The providers a session asks for: an accelerated one first when the settings ask for
    an accelerator and onnxruntime has one (`available`), then the CPU; else the CPU only."""
    if not accelerator:
        return [CPU_PROVIDER]
    accelerated = next((p for p in ACCELERATED_PROVIDERS if p in available), None)
    if accelerated is None:
        log.warning(
            "accelerator %s asked for, but onnxruntime has no CUDA or TensorRT provider "
            "(available: %s): running on the CPU",
            accelerator,
            ", ".join(available) or "none",
        )
        return [CPU_PROVIDER]
    return [accelerated, CPU_PROVIDER]


class Session:
    """A loaded model. `run` is thread-safe and releases the GIL inside onnxruntime."""

    def __init__(
        self,
        path: str,
        settings: VersionSettings,
        intra_op_threads: int,
        large_model_bytes: int = LARGE_MODEL_BYTES,
    ) -> None:
        options = ort.SessionOptions()
        # Many versions share a small machine: one intra-op thread each, no spinning, so
        # concurrency comes from the engine's thread pool and idle versions cost no CPU.
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.large = os.path.getsize(path) > large_model_bytes
        self._providers = execution_providers(settings.accelerator, ort.get_available_providers())
        self.external_weights = 0  # initializers memory-mapped from the file
        if self.large:
            # Pre-packing copies every big MatMul weight into a second, re-laid-out buffer:
            # seconds of CPU and hundreds of MB for a large model, for a small gain per run.
            options.add_session_config_entry("session.disable_prepacking", "1")
        self._session = self._create(path, options)
        # With one intra-op thread a run executes in the calling thread, so that thread's CPU
        # time is the model's cost, unaffected by waits for the GIL or a busy core.
        self.clock: Callable[[], float] = (
            time.thread_time if intra_op_threads == 1 else time.perf_counter
        )
        self.cost: float | None = None  # seconds per row of a batch-1 run, once measured
        # Warm-up runs with these options so that a shutdown can abort the run in progress.
        self._warm_options = ort.RunOptions()
        self.sha256 = ""  # of the model file this session was built from (set by the loader)
        self.settings = settings
        self._check(settings)
        self.output_names = [o.name for o in settings.outputs]
        # What onnxruntime actually runs the graph on (the CPU if the accelerator failed).
        self.providers: list[str] = list(self._session.get_providers())

    def _create(self, path: str, options: ort.SessionOptions) -> ort.InferenceSession:
        providers = self._providers
        if self.large:
            try:
                model, self.external_weights = weights.external_model(Path(path))
            except (weights.Unsupported, OSError, ValueError):
                model = b""
            if model:
                folder = str(Path(path).parent)
                options.add_session_config_entry(
                    "session.model_external_initializers_file_folder_path", folder
                )
                try:
                    return ort.InferenceSession(model, sess_options=options, providers=providers)
                except Exception:  # the ordinary load below reports the reason
                    self.external_weights = 0
        try:
            return ort.InferenceSession(path, sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BadRequest(f"cannot load {path}: {_first_line(exc)}") from None

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

    def warm_up(
        self,
        requests: int,
        budget: float = WARMUP_BUDGET_SECONDS,
        stop: threading.Event | None = None,
    ) -> int:
        """Run zero inputs through the graph so the first real request pays no setup cost.

        Stops after `budget` seconds, or at once when `stop` is set (see `abort_warm_up`);
        returns the runs made."""
        feeds = {
            spec.name: np.zeros(tuple(1 if d < 0 else d for d in spec.shape), dtype=spec.dtype)
            for spec in self.settings.inputs
        }
        clock, best = self.clock, float("inf")
        deadline = time.monotonic() + budget
        runs = 0
        for i in range(requests + CALIBRATION_RUNS):
            if i >= requests and best > CALIBRATION_MAX_SECONDS:
                break  # a slow model is kept off the event loop anyway: skip calibration
            if (stop is not None and stop.is_set()) or (i and time.monotonic() > deadline):
                break
            start = clock()
            try:
                self._warm_run(feeds)
            except ModelFailure:
                # Zeros may be outside a model's domain (e.g. a guarded reshape); the graph
                # still got initialised, which is what warm-up is for.
                return runs + 1
            runs += 1
            best = min(best, clock() - start)
        # The best run, not the first: the first pays one-time allocations.
        rows = next((shape[0] for shape in (f.shape for f in feeds.values()) if shape), 1)
        self.cost = best / max(rows, 1) if best != float("inf") else None
        return runs

    def abort_warm_up(self) -> None:
        """Make a warm-up in another thread stop, including the run it is in (thread-safe)."""
        self._warm_options.terminate = True

    def _warm_run(self, feeds: Feeds) -> None:
        try:
            self._session.run(self.output_names, feeds, self._warm_options)
        except Exception as exc:
            raise ModelFailure(f"model failed: {_first_line(exc)}") from None


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
