"""Shadow traffic: mirror a served request to another version and compare the predictions.

Mirroring starts only after the primary response has been sent, goes through the shadow
version's own bounded queue, and swallows every failure into a counter: it can cost spare
capacity but never delays or fails the primary request.
"""

from __future__ import annotations

import asyncio
import functools
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


def mirror(target: ModelVersion, feeds: Feeds, rows: int, primary: Outputs) -> None:
    """Submit to the shadow version; the comparison runs when its result arrives."""
    counts = target.stats.shadow
    try:
        # The primary response is already sent, so a fast shadow can run right here.
        outputs = target.batcher.run_inline(feeds, rows)
        if outputs is None:
            future = target.batcher.submit(feeds, rows)
    except ServingError as exc:  # full shadow queue or a failed run: count, never raise
        counts[str(exc.status)] += 1
        return
    if outputs is not None:
        _record(target, primary, outputs)
        return
    future.add_done_callback(functools.partial(_compare, target, primary))


def _compare(target: ModelVersion, primary: Outputs, future: asyncio.Future[Any]) -> None:
    stats = target.stats
    if future.cancelled():
        stats.shadow["499"] += 1
        return
    exc = future.exception()
    if exc is not None:
        stats.shadow[str(getattr(exc, "status", 500))] += 1
        return
    _record(target, primary, future.result())


def _record(target: ModelVersion, primary: Outputs, shadow: Outputs) -> None:
    stats = target.stats
    stats.shadow["200"] += 1
    same = agree(primary, shadow, target.settings.classification)
    stats.agreement["true" if same else "false"] += 1
