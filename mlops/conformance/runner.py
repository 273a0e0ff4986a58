"""`run()`: the conformance test of a version already loaded (with no traffic) in the engine.

1. The artifact's sha256, and the engine's copy of it, must match the registry's record.
2. The validation set, sent through the version-pinned V2 endpoint, must score within
   `tolerance` of the registered baseline (lower only: a better model passes).
3. p99 latency under a short single-row load must stay within the baseline p99 plus
   `max_increase` (default +20%).
The result is a JSON-ready dict the executor records on the registry version.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from mlops import datasets, errors
from mlops.conformance import checks
from mlops.providers import base
from mlops.state import models as state
from mlops.workspace import Workspace

DEFAULT_TOLERANCE = 0.005
DEFAULT_MAX_INCREASE = 0.20


class Target(Protocol):
    """What conformance needs of an apply target (`mlops.apply.target.Target` fits)."""

    @property
    def ws(self) -> Workspace: ...
    @property
    def registry(self) -> base.Registry: ...
    @property
    def runtime(self) -> base.Runtime: ...


def run(
    target: Target,
    model: str,
    semver: str,
    after: Mapping[str, Any],
    *,
    validation: Path | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    """Conformance of `model@semver`; `after` is the plan's conformance_test payload. Model
    failures are a result with passed=False; an unreachable engine raises TransientError.
    `url`: test the engine there (a version's image running on loopback) instead of the
    target's runtime; the image carries its own copy of the bytes, hashed before the build."""
    version = target.registry.get_version(model, semver)
    if version is None:
        raise errors.RegistryError(f"{model}@{semver} is not registered")
    result: dict[str, Any] = {
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "metric": str(_given(after, "metric", version.baseline.metric)),
        "baseline": float(_given(after, "baseline", version.baseline.value)),
        "tolerance": float(_given(after, "tolerance", DEFAULT_TOLERANCE)),
        "baseline_p99_ms": float(_given(after, "p99_ms", version.baseline.p99_ms)),
        "max_increase": float(_given(after, "max_increase", DEFAULT_MAX_INCREASE)),
        "accuracy": None,
        "rows": 0,
    }
    reasons: list[str] = []
    reasons += _check_sha(target, model, semver, version, after.get("sha256"), result, url)
    if not reasons:
        data = validation or _validation_path(target.ws, after.get("validation"))
        reasons += _check_model(target, model, semver, version, data, result, url)
    result["reasons"] = reasons
    result["reason"] = "; ".join(reasons)
    result["passed"] = not reasons
    return result


def _given(after: Mapping[str, Any], key: str, default: Any) -> Any:
    """The payload's value, or `default` when absent or null. Never `x or default`: a
    zero tolerance or max_increase is a real, strict setting."""
    value = after.get(key)
    return default if value is None else value


def _check_sha(
    target: Target,
    model: str,
    semver: str,
    version: state.RegistryVersion,
    pinned: Any,
    result: dict[str, Any],
    url: str | None = None,
) -> list[str]:
    expected = str(pinned or version.sha256)
    actual = checks.sha256_of(target.registry.artifact_path(model, semver))
    result["sha256"] = actual
    if actual != expected:
        return [f"artifact sha256 {actual} is not the registered {expected}"]
    copy = target.runtime.served_artifact(model, semver) if url is None else None
    if copy is not None and checks.sha256_of(copy) != expected:
        return [f"the engine's copy of {model}@{semver} does not match sha256 {expected}"]
    return []


def _check_model(
    target: Target,
    model: str,
    semver: str,
    version: state.RegistryVersion,
    data: Path | None,
    result: dict[str, Any],
    engine_url: str | None = None,
) -> list[str]:
    from mlops.providers.engine import client as engine_client

    signature = version.signature
    dtypes = {t.name: t.dtype.value for t in signature.inputs}
    first = signature.outputs[0].name
    url = engine_url or target.runtime.inference_url()

    def make_infer() -> tuple[checks.Infer, Callable[[], None]]:
        client = engine_client.VersionClient(url, model, semver, dtypes, [first])
        return client, client.close

    reasons: list[str] = []
    try:
        if data is not None:
            inputs, labels = datasets.load_validation(data, list(dtypes))
            inputs = {
                n: a.astype(checks.NUMPY_DTYPES.get(dtypes[n], a.dtype)) for n, a in inputs.items()
            }
            client = engine_client.VersionClient(url, model, semver, dtypes, [first])
            try:
                # The server refuses batches above the version's max_batch_size.
                limit = max_batch_size(url, model, semver, client.max_batch_size)
                batch_rows = min(checks.BATCH_ROWS, limit) if limit > 1 else checks.BATCH_ROWS
                score = checks.accuracy(client, inputs, labels, first, batch_rows)
            finally:
                client.close()
            result.update(accuracy=round(score, 6), rows=len(labels))
            floor = result["baseline"] - result["tolerance"]
            if score < floor:
                reasons.append(
                    f"{result['metric']} {score:.4f} is below the baseline "
                    f"{result['baseline']:.4f} - tolerance {result['tolerance']:g}"
                )
            rows = checks.single_rows(inputs)
        else:
            result["accuracy_skipped"] = "no validation data"
            rows = checks.synthetic_rows(signature)
        timing = checks.latency(make_infer, rows)
    except engine_client.EngineRejected as exc:
        return [*reasons, f"inference failed: {exc.message}"]
    budget = result["baseline_p99_ms"] * (1.0 + result["max_increase"])
    result.update(
        p50_ms=round(timing.p50_ms, 3),
        p99_ms=round(timing.p99_ms, 3),
        p99_budget_ms=round(budget, 3),
        latency_requests=timing.requests,
    )
    if not timing.complete:
        reasons.append(f"latency test did not finish within {checks.LATENCY_DEADLINE_S:.0f}s")
    elif timing.p99_ms > budget:
        reasons.append(
            f"p99 {timing.p99_ms:.2f} ms is over the baseline {result['baseline_p99_ms']:g} ms "
            f"+{result['max_increase']:.0%} ({budget:.2f} ms)"
        )
    return reasons


CONFIG_MAX_BYTES = 1 << 20


def max_batch_size(url: str, model: str, semver: str, metadata: Callable[[], int]) -> int:
    """The version's batch limit from the model configuration endpoint (Triton's
    `GET /v2/models/NAME/versions/V/config`; the mlops engine answers it too): Triton's model
    metadata has no such field. `metadata` reads it for a server without the endpoint."""
    import httpx

    where = f"{url.rstrip('/')}/v2/models/{model}/versions/{semver}/config"
    try:
        response = httpx.get(where, timeout=10.0)
    except httpx.HTTPError as exc:
        raise errors.TransientError(f"model configuration of {model}@{semver}: {exc}") from None
    if response.status_code in (404, 405, 501):
        return metadata()  # a server without the configuration extension
    if response.status_code != 200 or len(response.content) > CONFIG_MAX_BYTES:
        raise errors.TransientError(
            f"model configuration of {model}@{semver}: HTTP {response.status_code}"
        )
    try:
        value = response.json().get("max_batch_size", 0)
        limit = int(value)  # int32 in the message; JSON may carry it as text
    except (ValueError, TypeError, AttributeError):
        raise errors.TransientError(
            f"model configuration of {model}@{semver}: max_batch_size is not a number"
        ) from None
    return limit if 0 <= limit <= 1 << 31 else 0


def _validation_path(ws: Workspace, raw: Any) -> Path | None:
    if not raw:
        return None
    return ws.inside(Path(str(raw)), what="validation data")
