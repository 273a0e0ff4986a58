"""The dynamic batcher, driven directly with a fake model (no timing assertions)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from mlops.serving.batcher import Batcher, Feeds, Outputs
from mlops.serving.errors import ModelFailure, Overloaded
from mlops.serving.settings import Batching
from mlops.serving.stats import VersionStats


class _Model:
    """Doubles its input; fails on any batch holding a negative value; can be held closed."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.batch_sizes: list[int] = []

    def __call__(self, feeds: Feeds) -> Outputs:
        self.gate.wait(10)
        x = feeds["x"]
        self.batch_sizes.append(len(x))
        if (x < 0).any():
            raise ModelFailure("model failed: negative input")
        return [x * 2]


def _feeds(value: float, rows: int = 1) -> Feeds:
    return {"x": np.full((rows, 3), value, dtype=np.float32)}


async def _run(batching: Batching, body: Any) -> tuple[_Model, VersionStats, Any]:
    model, stats = _Model(), VersionStats()
    with ThreadPoolExecutor(2) as pool:
        batcher = Batcher(model, batching, pool, 1, stats, "m@1")
        result = await body(batcher, model)
    return model, stats, result


def test_requests_queued_while_the_model_is_busy_merge_into_one_batch() -> None:
    async def body(batcher: Batcher, model: _Model) -> list[Outputs]:
        model.gate.clear()  # hold the first batch so the others queue behind it
        futures = [batcher.submit(_feeds(i), 1) for i in range(20)]
        await asyncio.sleep(0)
        model.gate.set()
        return list(await asyncio.gather(*futures))

    model, stats, results = asyncio.run(_run(Batching(max_batch_size=32), body))
    assert model.batch_sizes == [1, 19]
    assert (stats.batches, stats.batched_requests) == (2, 20)
    for i, outputs in enumerate(results):
        assert outputs[0].tolist() == [[2.0 * i] * 3]


def test_a_full_queue_is_refused_at_once() -> None:
    async def body(batcher: Batcher, model: _Model) -> BaseException | None:
        model.gate.clear()
        first = batcher.submit(_feeds(1), 1)  # dispatched, holds the only slot
        waiting = [batcher.submit(_feeds(1), 1) for _ in range(2)]
        try:
            batcher.submit(_feeds(1), 1)
        except Overloaded as exc:
            error: BaseException | None = exc
        else:
            error = None
        model.gate.set()
        await asyncio.gather(first, *waiting)
        return error

    _, _, error = asyncio.run(_run(Batching(max_batch_size=8, max_queue_size=2), body))
    assert isinstance(error, Overloaded)


def test_a_failing_request_does_not_fail_its_batch_mates() -> None:
    async def body(batcher: Batcher, model: _Model) -> list[Any]:
        model.gate.clear()
        futures = [batcher.submit(_feeds(v), 1) for v in (1, 2, -1, 3)]
        await asyncio.sleep(0)
        model.gate.set()
        return list(await asyncio.gather(*futures, return_exceptions=True))

    _, _, results = asyncio.run(_run(Batching(max_batch_size=8), body))
    assert isinstance(results[2], ModelFailure)
    assert [r[0][0, 0] for i, r in enumerate(results) if i != 2] == [2, 4, 6]


def test_drain_waits_for_admitted_requests() -> None:
    async def body(batcher: Batcher, model: _Model) -> bool:
        model.gate.clear()
        future = batcher.submit(_feeds(1), 1)
        drain = asyncio.ensure_future(batcher.drain())
        await asyncio.sleep(0.01)
        pending = not drain.done()
        model.gate.set()
        await drain
        return pending and future.done()

    _, _, ok = asyncio.run(_run(Batching(max_batch_size=8), body))
    assert ok


@pytest.mark.parametrize("rows", [1, 3])
def test_unbatched_versions_run_each_request_alone(rows: int) -> None:
    async def body(batcher: Batcher, model: _Model) -> None:
        await asyncio.gather(*(batcher.submit(_feeds(1, rows), rows) for _ in range(5)))

    model, _, _ = asyncio.run(_run(Batching(max_batch_size=0), body))
    assert model.batch_sizes == [rows] * 5
