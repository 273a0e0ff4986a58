"""Triton's statistics and model configuration extensions, read-only, on the inference port.

Triton's own clients (`tritonclient.http`, its examples) call these next to the V2 core
protocol:

- `GET /v2/models/stats`, `/v2/models/{name}/stats`, `/v2/models/{name}/versions/{v}/stats`:
  Triton's `model_stats` document, one entry per loaded version, from the counters the
  engine keeps anyway (stats.py). Counts only: no inputs, outputs or client addresses.
- `GET /v2/models/{name}[/versions/{v}]/config`: the model configuration as Triton's JSON
  form of `ModelConfig` (name, platform, max_batch_size, input, output, dynamic_batching).

How the engine's stages map onto Triton's (docs/triton-compat.md): compute_input is decode +
validation, compute_infer the model run (queue wait taken out), compute_output the encoding;
queue is the wait in the batcher's queue. Errors use Triton's wording ("Request for unknown
model: 'X' is not found"), which its clients look for.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from mlops.serving.errors import MethodNotAllowed, NotFound
from mlops.serving.http import Scope, Send, respond_json
from mlops.serving.router import semver_key

if TYPE_CHECKING:
    from mlops.serving.app import Engine
    from mlops.serving.settings import TensorSpec
    from mlops.serving.version import ModelVersion

_ENDPOINTS = ("stats", "config")
_NAME_IN_ERRORS = 200  # characters of a requested name echoed back in an error


def handles(parts: list[str]) -> bool:
    """Whether `parts` (the path after /v2/, split on '/') is one of these endpoints."""
    if len(parts) < 2 or parts[0] != "models" or parts[-1] not in _ENDPOINTS:
        return False
    if len(parts) == 2:
        return parts[1] == "stats"  # GET /v2/models/stats: every model
    return len(parts) == 3 or (len(parts) == 5 and parts[2] == "versions")


async def handle(engine: Engine, scope: Scope, send: Send, parts: list[str]) -> None:
    if scope["method"] != "GET":
        raise MethodNotAllowed("use GET")
    name = parts[1] if len(parts) > 2 else None
    version = parts[3] if len(parts) == 5 else None
    if parts[-1] == "stats":
        versions = _versions(engine, name, version)
        await respond_json(send, 200, {"model_stats": [model_stat(mv) for mv in versions]})
    else:
        assert name is not None
        await respond_json(send, 200, model_config(_one(engine, name, version)))


def _unknown(name: str) -> NotFound:
    return NotFound(f"Request for unknown model: '{name[:_NAME_IN_ERRORS]}' is not found")


def _versions(engine: Engine, name: str | None, version: str | None) -> list[ModelVersion]:
    """Loaded versions, by name then semver; an unknown name or version is an error."""
    live = engine.repository.live
    if name is None:
        return [
            versions[v]
            for n, versions in sorted(live.items())
            for v in sorted(versions, key=semver_key)
        ]
    if version is not None:
        return [_one(engine, name, version)]
    versions = live.get(name)
    if not versions:
        raise _unknown(name)
    return [versions[v] for v in sorted(versions, key=semver_key)]


def _one(engine: Engine, name: str, version: str | None) -> ModelVersion:
    """The version asked for, or the latest loaded one (Triton's default policy)."""
    versions = engine.repository.live.get(name)
    if not versions:
        raise _unknown(name)
    if version is None:
        return versions[max(versions, key=semver_key)]
    found = versions.get(version)
    if found is None:
        raise NotFound(
            f"Request for unknown model: '{name[:_NAME_IN_ERRORS]}' version "
            f"{version[:_NAME_IN_ERRORS]} is not found"
        )
    return found


def _duration(count: int, seconds: float) -> dict[str, int]:
    return {"count": count, "ns": max(int(seconds * 1e9), 0)}


def model_stat(mv: ModelVersion) -> dict[str, Any]:
    """Triton's $model_stat for one version: client requests (routed and direct) only;
    mirrored shadow copies are not requests a client made."""
    s = mv.stats
    success = fail = 0
    success_seconds = 0.0
    for counts in (s.routed, s.direct):
        success_seconds += counts.duration.sum
        for code, n in counts.requests.items():
            if code == "200":
                success += n
            elif code != "499":  # the client went away: neither a success nor a failure
                fail += n
    decode, prepare, infer, encode = s.stages
    computed = sum(infer.counts)
    last = 0
    if s.last_at:
        # perf_counter stamp -> milliseconds since the epoch
        last = int((s.last_at + time.time() - time.perf_counter()) * 1000)
    return {
        "name": mv.name,
        "version": mv.version,
        "last_inference": last,
        "inference_count": s.inferences,
        "execution_count": s.batches,
        "inference_stats": {
            "success": _duration(success, success_seconds),
            "fail": _duration(fail, s.failed_seconds),
            "queue": _duration(computed, s.queued_seconds),
            "compute_input": _duration(sum(decode.counts), decode.sum + prepare.sum),
            "compute_infer": _duration(computed, infer.sum - s.queued_seconds),
            "compute_output": _duration(sum(encode.counts), encode.sum),
            "cache_hit": _duration(0, 0.0),
            "cache_miss": _duration(0, 0.0),
        },
        "batch_stats": [],  # not kept per batch size; execution_count has the runs
    }


def _data_type(datatype: str) -> str:
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def _batch_major(tensors: tuple[TensorSpec, ...]) -> bool:
    return bool(tensors) and all(t.shape and t.shape[0] == -1 for t in tensors)


def model_config(mv: ModelVersion) -> dict[str, Any]:
    """Triton's JSON model configuration. With batching on (and every tensor's first
    dimension free), `max_batch_size` is the batcher's and `dims` leave the batch dimension
    out, as in Triton; otherwise `max_batch_size` is 0 and `dims` are the full shapes."""
    settings = mv.settings
    batching = settings.batching
    batched = batching.enabled and _batch_major(settings.inputs + settings.outputs)

    def tensor(t: TensorSpec) -> dict[str, Any]:
        dims = list(t.shape[1:] if batched else t.shape)
        return {"name": t.name, "data_type": _data_type(t.datatype), "dims": dims}

    doc: dict[str, Any] = {
        "name": mv.name,
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "max_batch_size": batching.max_batch_size if batched else 0,
        "input": [tensor(t) for t in settings.inputs],
        "output": [tensor(t) for t in settings.outputs],
    }
    if batched:
        doc["dynamic_batching"] = {
            "preferred_batch_size": list(batching.preferred_batch_sizes),
            "max_queue_delay_microseconds": int(batching.max_queue_delay_ms * 1000),
        }
    return doc
