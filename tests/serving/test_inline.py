"""Fast versions run on the event loop when nothing is queued for them; slow ones never do.

Costs come from an injected clock, so nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from mlops.serving.batcher import INLINE_MAX_SECONDS, Batcher, Feeds, Outputs
from mlops.serving.errors import ModelFailure
from mlops.serving.settings import Batching
from mlops.serving.stats import VersionStats
from tests.serving import fixtures
from tests.serving.conftest import EngineThread


class _Model:
    """Doubles its input, records the thread of each run and advances a fake clock."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.now = 0.0
        self.threads: list[int] = []
        self.batch_sizes: list[int] = []

    def clock(self) -> float:
        return self.now

    def __call__(self, feeds: Feeds) -> Outputs:
        self.now += self.seconds
        self.threads.append(threading.get_ident())
        self.batch_sizes.append(len(feeds["x"]))
        if (feeds["x"] < 0).any():
            raise ModelFailure("model failed: negative input")
        return [feeds["x"] * 2]


def _feeds(value: float, rows: int = 1) -> Feeds:
    return {"x": np.full((rows, 3), value, dtype=np.float32)}


Body = Callable[[Batcher, _Model], Awaitable[Any]]


def _run(seconds: float, cost: float | None, body: Body, batching: Batching | None = None) -> Any:
    model = _Model(seconds)

    async def main() -> Any:
        with ThreadPoolExecutor(2) as pool:
            batcher = Batcher(
                model, batching or Batching(), pool, 2, VersionStats(), "m@1", cost, model.clock
            )
            return await body(batcher, model)

    return asyncio.run(main()), model


def test_a_fast_version_runs_on_the_loop_thread_and_counts_the_run() -> None:
    async def body(batcher: Batcher, model: _Model) -> Any:
        outputs = batcher.run_inline(_feeds(1.5), 1)
        return outputs, threading.get_ident(), batcher._stats.batches

    (outputs, loop_thread, batches), model = _run(10e-6, 10e-6, body)
    assert outputs is not None and outputs[0].tolist() == [[3.0] * 3]
    assert model.threads == [loop_thread]
    assert batches == 1


def test_a_slow_or_unmeasured_version_stays_off_the_loop() -> None:
    async def body(batcher: Batcher, model: _Model) -> Any:
        return batcher.run_inline(_feeds(1.0), 1)

    slow = INLINE_MAX_SECONDS * 10
    assert _run(slow, slow, body)[0] is None
    assert _run(10e-6, None, body)[0] is None
    # A large request of a fast model is estimated by its rows and goes to the pool.
    big = int(INLINE_MAX_SECONDS / 10e-6) + 1

    async def large(batcher: Batcher, model: _Model) -> Any:
        return batcher.run_inline(_feeds(1.0, big), big)

    assert _run(10e-6, 10e-6, large)[0] is None


def test_measured_runs_move_the_decision_both_ways() -> None:
    async def pool_then_inline(batcher: Batcher, model: _Model) -> Any:
        first = batcher.run_inline(_feeds(1.0), 1)  # unmeasured: not inline
        await batcher.submit(_feeds(1.0), 1)  # measured in the pool: fast
        return first, batcher.run_inline(_feeds(1.0), 1)

    (first, second), _ = _run(10e-6, None, pool_then_inline)
    assert first is None and second is not None

    async def turns_slow(batcher: Batcher, model: _Model) -> Any:
        model.seconds = INLINE_MAX_SECONDS * 100  # e.g. real inputs cost more than zeros
        runs = 0
        while batcher.run_inline(_feeds(1.0), 1) is not None:
            runs += 1
            assert runs < 10
        return runs

    runs, _ = _run(10e-6, 10e-6, turns_slow)
    assert runs >= 1  # the slow runs were inline until measured, then stopped


def test_nothing_overtakes_queued_work_and_failures_raise() -> None:
    async def body(batcher: Batcher, model: _Model) -> Any:
        batcher._busy = 1  # a run of this version is in the pool
        busy = batcher.run_inline(_feeds(1.0), 1)
        batcher._busy = 0
        with pytest.raises(ModelFailure):
            batcher.run_inline(_feeds(-1.0), 1)
        return busy

    busy, _ = _run(10e-6, 10e-6, body)
    assert busy is None


def test_a_batching_version_queues_requests_of_the_same_iteration_into_one_batch() -> None:
    async def body(batcher: Batcher, model: _Model) -> Any:
        first = batcher.run_inline(_feeds(1.0), 1)
        rest = []
        for i in range(5):  # same loop iteration: a batch could form
            assert batcher.run_inline(_feeds(float(i)), 1) is None
            rest.append(batcher.submit(_feeds(float(i)), 1))
        results = await asyncio.gather(*rest)
        later = batcher.run_inline(_feeds(1.0), 1)  # a new iteration, nothing queued
        return first, results, later

    (first, results, later), model = _run(
        10e-6, 10e-6, body, Batching(max_batch_size=8, max_queue_delay_ms=2)
    )
    assert first is not None and later is not None
    assert model.batch_sizes == [1, 5, 1]
    assert [r[0].tolist() for r in results] == [[[2.0 * i] * 3] for i in range(5)]


def test_preferred_batch_sizes_are_never_run_inline() -> None:
    async def body(batcher: Batcher, model: _Model) -> Any:
        return batcher.run_inline(_feeds(1.0), 1)

    batching = Batching(max_batch_size=8, max_queue_delay_ms=2, preferred_batch_sizes=(4,))
    assert _run(10e-6, 10e-6, body, batching)[0] is None


def test_real_sessions_fast_inline_slow_not(engine: EngineThread) -> None:
    """With real onnxruntime sessions: the classifier runs inline, the slow MatMul stack not."""
    repo = engine.engine.repository

    async def inline(name: str, width: int) -> Any:
        mv = repo.get(name, "1.0.0")
        x = np.random.default_rng(3).normal(size=(1, width)).astype(np.float32)
        return mv.batcher.cost, mv.batcher.run_inline({"input": x}, 1), x

    cost, outputs, x = engine.call(inline("clf", fixtures.FEATURES))
    assert cost < INLINE_MAX_SECONDS
    assert outputs is not None
    direct = ort.InferenceSession(fixtures.classifier_bytes(seed=0))
    expected = direct.run(["probabilities"], {"input": x})
    np.testing.assert_allclose(outputs[0], expected[0], rtol=1e-6)
    cost, outputs, _ = engine.call(inline("slow", fixtures.SLOW_WIDTH))
    assert cost > INLINE_MAX_SECONDS
    assert outputs is None
