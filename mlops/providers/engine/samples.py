"""Live input samples of the local engine: read from every worker and merged, and the
training statistics each worker's drift gauges compare against.

Each worker keeps its own reservoir of the requests it served (mlops/serving/sampling.py).
Merged, a worker contributes in proportion to the rows it has seen, so a worker that took
most of the traffic weighs most; the merged sample is no larger than the largest reservoir.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlops import errors
from mlops.providers.engine import client as engine_client
from mlops.providers.engine import process as engine_process
from mlops.state import models as state
from mlops.workspace import Workspace

# A worker's answer is bounded by its own memory bound; this guards the controller against
# a worker that claims absurd shapes.
MAX_ROWS = 1 << 20


@dataclass(frozen=True)
class Samples:
    arrays: dict[str, np.ndarray[Any, Any]] = field(default_factory=dict)  # per input
    rows: int = 0
    seen: int = 0  # rows offered to the reservoirs, summed over workers (capped per worker)
    workers: int = 0  # workers that answered
    problems: tuple[str, ...] = ()  # why a worker holds no samples, when it says


def read(
    admins: Sequence[engine_client.AdminClient], name: str, version: str, *, seed: int = 0
) -> Samples:
    """Every worker's reservoir of NAME@VERSION, merged."""
    parts: list[tuple[int, dict[str, np.ndarray[Any, Any]]]] = []
    problems: list[str] = []
    for admin in admins:
        doc = admin.samples(name, version)
        arrays = {n: _array(admin.url, n, t) for n, t in doc["inputs"].items()}
        if doc.get("problem"):
            problems.append(f"{admin.url}: {doc['problem']}")
        parts.append((_count(doc.get("seen")), arrays))
    merged = _merge(parts, np.random.default_rng(seed))
    rows = next((len(a) for a in merged.values()), 0)
    return Samples(merged, rows, sum(s for s, _ in parts), len(parts), tuple(problems))


def _array(url: str, name: str, tensor: Any) -> np.ndarray[Any, Any]:
    try:
        shape = [int(d) for d in tensor["shape"]]
        dtype = np.dtype(str(tensor["dtype"]))
        if dtype.kind not in "biuf" or not shape or shape[0] > MAX_ROWS:
            raise ValueError("not a bounded numeric tensor")
        array = np.asarray(tensor["data"], dtype=np.float64 if dtype.kind == "f" else dtype)
        return array.reshape(shape)
    except (KeyError, TypeError, ValueError) as exc:
        raise engine_client.EngineRejected(
            f"{url}: samples of input {name!r} are malformed ({exc})", 502
        ) from None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _merge(
    parts: list[tuple[int, dict[str, np.ndarray[Any, Any]]]], rng: np.random.Generator
) -> dict[str, np.ndarray[Any, Any]]:
    held = [(seen, arrays) for seen, arrays in parts if arrays and _rows(arrays) > 0]
    if not held:
        return {}
    names = set(held[0][1])
    if any(set(arrays) != names for _, arrays in held):
        raise errors.PermanentError("workers sampled different inputs; reload the version")
    target = max(_rows(arrays) for _, arrays in held)
    total_seen = sum(seen for seen, _ in held) or len(held)
    chosen: dict[str, list[np.ndarray[Any, Any]]] = {n: [] for n in names}
    for seen, arrays in held:
        share = (seen or 1) / total_seen
        n = _rows(arrays)
        take = min(n, max(1, round(target * share)))
        index = np.sort(rng.choice(n, size=take, replace=False))
        for name in names:
            chosen[name].append(arrays[name][index])
    try:
        return {n: np.concatenate(chunks) for n, chunks in chosen.items()}
    except ValueError as exc:
        raise errors.PermanentError(f"workers sampled differently shaped inputs: {exc}") from None


def _rows(arrays: dict[str, np.ndarray[Any, Any]]) -> int:
    return min(len(a) for a in arrays.values())


def baseline_doc(training: Sequence[state.FeatureStats]) -> list[dict[str, Any]]:
    """What `PUT /v2/samples/NAME/VERSION` takes: mean, std and histogram per feature."""
    return [
        {
            "name": s.name,
            "mean": s.mean,
            "std": s.std,
            "histogram": list(s.histogram),
            "bin_edges": list(s.bin_edges),
        }
        for s in training
    ]


def push_baseline(
    admins: Sequence[engine_client.AdminClient],
    name: str,
    version: str,
    training: Sequence[state.FeatureStats],
) -> None:
    """Every worker gets the training statistics its drift gauges compare against."""
    doc = baseline_doc(training)
    for admin in admins:
        admin.set_baseline(name, version, doc)


def admins(ws: Workspace) -> list[engine_client.AdminClient]:
    """Admin clients of the running local engine's workers (close them after use)."""
    if ws.config.target != "local":
        raise errors.UsageError(
            f"live drift reads the mlops engine's samples; target {ws.config.target!r} has "
            "no such engine (use --data FILE)"
        )
    if ws.config.serve.runtime != "process":
        raise errors.UsageError(
            f"live drift reads the local engine processes' samples; serve.runtime "
            f"{ws.config.serve.runtime!r} runs each version as a container whose admin API "
            "stays inside it (use --data FILE)"
        )
    process = engine_process.EngineProcess(ws)
    record = process.record()
    urls = record.admin_urls() if record is not None else []
    if not urls:
        raise errors.UsageError("the engine is not running (mlops apply starts it)")
    token = process.admin_token()
    return [engine_client.AdminClient(url, token=token) for url in urls]
