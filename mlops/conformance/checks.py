"""The three conformance checks of a loaded version, over a function that runs inference.

`Infer` is a plain function of named arrays; the runner builds it from the engine's V2 API.
Everything here is deterministic given the function, except the latency measurement, which is
bounded in requests and in time.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]
Infer = Callable[[Mapping[str, Array]], dict[str, Array]]

BATCH_ROWS = 64
LATENCY_REQUESTS = 200
LATENCY_THREADS = 2
LATENCY_WARMUP = 10
LATENCY_DEADLINE_S = 60.0


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def predictions(output: Array) -> Array:
    """docs/design.md: the argmax of the first output when it is 2-D (one column: that column),
    else the output itself."""
    if output.ndim == 2 and output.shape[1] > 1:
        return np.asarray(np.argmax(output, axis=1))
    return np.asarray(output).reshape(len(output))


def accuracy(
    infer: Infer,
    inputs: Mapping[str, Array],
    labels: Array,
    first_output: str,
    batch_rows: int = BATCH_ROWS,
) -> float:
    """Share of rows whose prediction equals the label, sent in batches of `batch_rows`."""
    rows = len(labels)
    if rows == 0:
        raise ValueError("the validation set has no rows")
    correct = 0
    for start in range(0, rows, batch_rows):
        batch = {name: array[start : start + batch_rows] for name, array in inputs.items()}
        predicted = predictions(infer(batch)[first_output])
        expected = labels[start : start + batch_rows].reshape(len(predicted))
        correct += int(np.sum(predicted == expected.astype(predicted.dtype, copy=False)))
    return correct / rows


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p99_ms: float
    requests: int
    complete: bool  # False: the deadline cut the run short


def latency(
    make_infer: Callable[[], tuple[Infer, Callable[[], None]]],
    rows: Sequence[Mapping[str, Array]],
    *,
    requests: int = LATENCY_REQUESTS,
    threads: int = LATENCY_THREADS,
    deadline_s: float = LATENCY_DEADLINE_S,
) -> Latency:
    """Single-row requests from `threads` clients (each its own connection), as a light
    representative load. The first LATENCY_WARMUP per client are not counted."""
    timings: list[float] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + deadline_s
    per_thread = max(1, requests // threads)

    def client(offset: int) -> None:
        infer, close = make_infer()
        try:
            for i in range(LATENCY_WARMUP + per_thread):
                if time.monotonic() > stop_at:
                    return
                row = rows[(offset + i) % len(rows)]
                started = time.perf_counter()
                infer(row)
                took = time.perf_counter() - started
                if i >= LATENCY_WARMUP:
                    with lock:
                        timings.append(took)
        except BaseException as exc:  # reported to the caller's thread below
            failures.append(exc)
        finally:
            close()

    workers = [threading.Thread(target=client, args=(k * 7919,)) for k in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failures:
        raise failures[0]
    if not timings:
        return Latency(float("inf"), float("inf"), 0, False)
    ms = np.asarray(timings) * 1000.0
    return Latency(
        float(np.percentile(ms, 50)),
        float(np.percentile(ms, 99)),
        len(timings),
        len(timings) >= per_thread * threads,
    )


def single_rows(inputs: Mapping[str, Array], limit: int = 256) -> list[dict[str, Array]]:
    """Up to `limit` one-row requests taken from the validation inputs."""
    count = min(limit, min(len(a) for a in inputs.values()))
    return [{name: a[i : i + 1] for name, a in inputs.items()} for i in range(count)]


def synthetic_rows(signature: Any, count: int = 64, seed: int = 0) -> list[dict[str, Array]]:
    """Rows of the declared shape when there is no validation data (latency only)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(count):
        row = {}
        for tensor in signature.inputs:
            shape = [1] + [d if d > 0 else 1 for d in tensor.shape[1:]]
            dtype = NUMPY_DTYPES.get(tensor.dtype.value, np.float32)
            row[tensor.name] = rng.normal(size=shape).astype(dtype)
        rows.append(row)
    return rows


NUMPY_DTYPES: dict[str, Any] = {
    "FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT64": np.int64,
    "INT32": np.int32, "INT16": np.int16, "INT8": np.int8, "UINT8": np.uint8, "BOOL": np.bool_,
}  # fmt: skip
