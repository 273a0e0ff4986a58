"""The inference hot path: route, decode, validate, batch, encode, count, mirror.

Every stage is timed with perf_counter stamps and counted in plain counters (see stats.py);
the primary response is sent before any shadow work starts.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from time import perf_counter
from typing import TYPE_CHECKING

from mlops.serving import encode, remote_shadow, shadow
from mlops.serving.errors import NotFound, ServingError
from mlops.serving.http import OCTET, Receive, Scope, Send, respond, respond_error

if TYPE_CHECKING:
    from mlops.serving.app import Engine

log = logging.getLogger("mlops.serving")

# Request ids: a per-process prefix and a counter, far cheaper than a uuid per request.
_PREFIX = f"{os.getpid():x}-{os.urandom(3).hex()}-"
_COUNTER = itertools.count(1)


async def handle(
    engine: Engine, scope: Scope, receive: Receive, send: Send, name: str, version: str | None
) -> None:
    t0 = perf_counter()
    request_id = header_len = declared = None
    for key, value in scope["headers"]:
        if key == b"inference-header-content-length":
            header_len = value
        elif key == b"content-length":
            declared = value
        elif key == b"x-request-id":
            request_id = value.decode("latin-1")[:128]
    if request_id is None:
        request_id = _PREFIX + str(next(_COUNTER))
    route = None
    try:
        if version is None:
            route = engine.router.routes.get(name)
            if route is None:
                raise NotFound(f"Request for unknown model: '{name}' is not found")
            mv = route.choose()
        else:
            mv = engine.repository.get(name, version)
    except ServingError as exc:
        headers = [(b"x-request-id", request_id.encode("latin-1")), (b"x-mlops-version", b"")]
        await respond_error(send, exc.status, exc.message, headers)
        return
    headers = [
        (b"x-request-id", request_id.encode("latin-1")),
        (b"x-mlops-version", mv.version.encode()),
    ]
    stats = mv.stats
    # Counted by how the request got here: gates judge what the router sent, never direct calls.
    counts = stats.routed if route is not None else stats.direct
    held = 0  # this request's bytes in the worker's budget of large bodies (see intake.py)
    try:
        held = engine.intake.admit(declared)  # 503 at once, before the body is read
        body = await engine.intake.read(scope, receive, held)
        held = engine.intake.admit_read(len(body), held)
        t1 = perf_counter()
        request = await engine.intake.decode(body, _header_length(header_len))
        t2 = perf_counter()
        feeds, rows = mv.prepare(request)
        t3 = perf_counter()
        outputs = mv.batcher.run_inline(feeds, rows)
        if outputs is None:
            outputs = await mv.batcher.submit(feeds, rows)
        t4 = perf_counter()
        named = list(zip(mv.session.output_names, outputs, strict=True))
        if request.outputs is not None:
            by_name = dict(named)
            named = [(n, by_name[n]) for n in request.outputs]
        binary = None if request.binary_all else request.binary_outputs
        payload, json_len = encode.response(
            name, mv.version, request.id or request_id, named, binary
        )
        t5 = perf_counter()
    except ServingError as exc:
        counts.requests[str(exc.status)] += 1
        stats.failed_seconds += perf_counter() - t0
        await respond_error(send, exc.status, exc.message, headers)
        return
    except asyncio.CancelledError:
        counts.requests["499"] += 1  # the client went away; nothing to answer
        raise
    except Exception as exc:
        log.exception("internal error serving %s@%s", name, mv.version)
        counts.requests["500"] += 1
        stats.failed_seconds += perf_counter() - t0
        await respond_error(send, 500, f"internal error: {type(exc).__name__}", headers)
        return
    finally:
        engine.intake.release(held)
    if json_len is None:
        await respond(send, 200, payload, extra=headers)
    else:
        headers.append((b"inference-header-content-length", str(json_len).encode()))
        await respond(send, 200, payload, OCTET, headers)
    counts.requests["200"] += 1
    counts.duration.observe(t5 - t0)
    stats.inferences += rows
    stats.last_at = t5
    decode_h, pre_h, infer_h, post_h = stats.stages
    decode_h.observe(t2 - t1)
    pre_h.observe(t3 - t2)
    infer_h.observe(t4 - t3)
    post_h.observe(t5 - t4)
    engine.feedback.remember(request_id, stats)
    engine.sampler.offer(mv.name, mv.version, feeds, rows)  # a countdown; rarely a copy
    if route is not None and route.shadow is not None:
        target = route.mirror(mv)
        if target is not None:
            shadow.mirror(target, feeds, rows, outputs, (t3 - t0) + (t5 - t4))
    elif route is not None and (remote := remote_shadow.shadows()) is not None:
        remote.offer(engine.stats, mv, feeds, outputs, (t3 - t0) + (t5 - t4))  # on a cluster
    if engine.tracer is not None:
        stamps = [t0, t1, t2, t3, t4, t5]
        engine.tracer.record(name, mv.version, request_id, 200, stamps, scope["headers"])


def _header_length(raw: bytes | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return -1  # rejected by the decoder with a one-line reason
