"""Shadow traffic: mirror a served request to another version and compare the predictions.

Mirroring starts only after the primary response has been sent, goes through the shadow
version's own bounded queue, and swallows every failure into a counter: it can cost spare
capacity but never delays or fails the primary request, and its result is never answered to
anyone.

Every mirrored request counts under the shadow version's `route="shadow"` counters, with a
latency of what the request would have taken had the shadow answered it: the primary's own
decode, checks and encoding (`overhead`, the same work for either version) plus the shadow's
queue wait and run. The shadow phase's gates judge these against stable's routed requests.
"""

from __future__ import annotations

import asyncio
import functools
from time import perf_counter
from typing import Any

import numpy as np

from mlops.serving.batcher import Feeds, Outputs
from mlops.serving.errors import ServingError
from mlops.serving.version import ModelVersion

RTOL = 1e-3
ATOL = 1e-5


def agree(primary: Outputs, shadow: Outputs, classification: bool) -> bool:
    """Argmax equality of the first output for classifiers, else allclose on every output."""
    if classification:
        a, b = primary[0], shadow[0]
        if a.shape != b.shape:
            return False
        if a.ndim < 2:
            return bool(np.array_equal(a, b))
        return bool(np.array_equal(a.argmax(axis=-1), b.argmax(axis=-1)))
    if len(primary) != len(shadow):
        return False
    return all(
        a.shape == b.shape and bool(np.allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True))
        for a, b in zip(primary, shadow, strict=True)
    )


def mirror(
    target: ModelVersion, feeds: Feeds, rows: int, primary: Outputs, overhead: float = 0.0
) -> None:
    """Submit to the shadow version; the comparison runs when its result arrives.

    `overhead`: seconds the primary spent outside its model run (decode, checks, encode)."""
    counts = target.stats.mirrored.requests
    start = perf_counter()
    try:
        # The primary response is already sent, so a fast shadow can run right here.
        outputs = target.batcher.run_inline(feeds, rows)
        if outputs is None:
            future = target.batcher.submit(feeds, rows)
    except ServingError as exc:  # full shadow queue or a failed run: count, never raise
        counts[str(exc.status)] += 1
        return
    if outputs is not None:
        _record(target, primary, outputs, overhead + perf_counter() - start)
        return
    future.add_done_callback(functools.partial(_compare, target, primary, start - overhead))


def _compare(
    target: ModelVersion, primary: Outputs, since: float, future: asyncio.Future[Any]
) -> None:
    counts = target.stats.mirrored.requests
    if future.cancelled():
        counts["499"] += 1
        return
    exc = future.exception()
    if exc is not None:
        counts[str(getattr(exc, "status", 500))] += 1
        return
    _record(target, primary, future.result(), perf_counter() - since)


def _record(target: ModelVersion, primary: Outputs, shadow: Outputs, seconds: float) -> None:
    stats = target.stats
    stats.mirrored.requests["200"] += 1
    stats.mirrored.duration.observe(seconds)
    same = agree(primary, shadow, target.settings.classification)
    stats.agreement["true" if same else "false"] += 1
