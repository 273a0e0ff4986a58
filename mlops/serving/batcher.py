"""Dynamic batching for one version: a bounded queue merged into batches run off the loop.

The batcher dispatches as soon as a batch slot is free, so an idle model adds no latency;
requests that arrive while the model is busy merge into the next batch (up to
`max_batch_size` rows). With `preferred_batch_sizes`, an idle model holds the queue for up to
`max_queue_delay_ms` to reach the largest preferred size. All state is touched only on the
event loop thread; only `_run` executes in the inference thread pool.

Fast versions run inline: handing a request to the pool and back costs two thread wake-ups
(on a small machine, about as much CPU as the whole rest of the request), far more than a
run of a small model. So a version whose measured cost stays under INLINE_MAX_SECONDS runs on
the event loop itself when nothing is queued or running for it, which blocks the loop no
longer than a JSON decode does. A batching version only does so for the first request of a
loop iteration: when more arrive in the same iteration, a batch could form, so they are
queued and dispatched together at the end of the iteration.

A merged run is split back by rows, so merging is only done when the split is provably right:
every request carries its row count as the first dimension of every input (zero-row requests,
scalars and inconsistent callers run alone), the requests agree on input names, dtypes and
trailing shapes, and every output of the merged run has the batch as its first dimension.
Whether outputs follow the batch is learnt from runs: a version is trusted to be batch-major
once its outputs' first dimension matched the rows of runs of two different sizes (a constant
first dimension can match at most one), and one mismatch stops merging for the version. A
merged run that cannot be split safely is discarded and its requests are run one by one.
Merging still assumes what batching always assumes: each output row depends only on its own
input row.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import numpy as np

from mlops.serving.errors import ModelFailure, Overloaded, ServingError
from mlops.serving.settings import Batching
from mlops.serving.stats import VersionStats

Feeds = dict[str, np.ndarray[Any, Any]]
Outputs = list[np.ndarray[Any, Any]]
Result = Outputs | ServingError

log = logging.getLogger("mlops.serving")

INLINE_MAX_SECONDS = 150e-6  # runs estimated above this stay off the event loop
COST_WEIGHT = 0.05  # weight of one new measurement in the cost average (about 20 runs)
# An inline run is timed one time in this many: the thread CPU clock is a system call (no
# vDSO), and two of them per request cost more than a small model's run.
MEASURE_EVERY = 8


class _Item:
    __slots__ = ("feeds", "future", "mergeable", "rows", "shaped", "since")

    def __init__(
        self,
        feeds: Feeds,
        rows: int,
        future: asyncio.Future[Outputs],
        since: float,
        mergeable: bool,
    ):
        self.feeds = feeds
        self.rows = rows
        self.future = future
        self.since = since
        self.shaped = carries_rows(feeds, rows)
        self.mergeable = mergeable and rows > 0 and self.shaped


def carries_rows(feeds: Feeds, rows: int) -> bool:
    """Every input has `rows` as its first dimension (so outputs can be checked against it)."""
    return bool(feeds) and all(v.ndim and v.shape[0] == rows for v in feeds.values())


def _signature(feeds: Feeds) -> list[tuple[str, np.dtype[Any], tuple[int, ...]]]:
    """What must agree between requests for their inputs to be concatenated."""
    return sorted((k, v.dtype, v.shape[1:]) for k, v in feeds.items())


class Batcher:
    def __init__(
        self,
        run: Callable[[Feeds], Outputs],
        batching: Batching,
        executor: Executor,
        slots: int,
        stats: VersionStats,
        name: str,
        cost: float | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._run_model = run
        self._executor = executor
        self._slots = slots
        self._stats = stats
        self._name = name
        self._max_rows = batching.max_batch_size if batching.enabled else 1
        self._target = max(batching.preferred_batch_sizes, default=0)
        self._delay = batching.max_queue_delay_ms / 1000.0
        self._max_queue = batching.max_queue_size
        self._pending: deque[_Item] = deque()
        self._pending_rows = 0
        self._busy = 0
        self._timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self.outstanding = 0  # admitted, not yet answered
        self._drained: asyncio.Event | None = None
        # Seconds per row of a single-request run (an average), measured with `clock`; None
        # until measured. Pool threads update it too: a lost update between them is harmless.
        self.cost = math.inf if cost is None else cost
        self._clock = clock
        self._measure_in = 0  # inline runs left before the next timed one
        self._batching = batching.enabled
        self._tick = False  # a request of this version already ran in this loop iteration
        # Row counts of runs whose every output had that many rows, and whether outputs may
        # still be batch-major at all (see the module docstring). Updated from pool threads
        # too: a set add and a bool store are atomic under the GIL.
        self._matched_rows: set[int] = set()
        self._batch_major = True

    @property
    def depth(self) -> int:
        return len(self._pending)

    def submit(self, feeds: Feeds, rows: int) -> asyncio.Future[Outputs]:
        if len(self._pending) >= self._max_queue:
            raise Overloaded(f"{self._name}: queue full ({self._max_queue} waiting)")
        future: asyncio.Future[Outputs] = self._loop.create_future()
        self._pending.append(_Item(feeds, rows, future, self._loop.time(), self._batching))
        self._pending_rows += rows
        self.outstanding += 1
        if not self._tick:
            # Within an iteration that already ran one request inline, requests wait for the
            # end of the iteration (`_end_tick`) so that they leave as one batch.
            self._dispatch()
        return future

    def run_inline(self, feeds: Feeds, rows: int) -> Outputs | None:
        """Run on the calling (event loop) thread if that is the cheaper way; else None.

        Raises the run's ServingError like the queued path would.
        """
        if (
            self._clock is None
            or self.cost * rows > INLINE_MAX_SECONDS
            or self._pending
            or self._busy
        ):
            return None
        if self._batching:
            if self._target or self._tick:
                return None  # a batch is wanted or could form: use the queue
            self._tick = True
            self._loop.call_soon(self._end_tick)
        if self._measure_in:
            self._measure_in -= 1
            outputs = self._run_model(feeds)
        else:
            self._measure_in = MEASURE_EVERY - 1
            start = self._clock()
            outputs = self._run_model(feeds)
            self._observe(self._clock() - start, rows)
        if self._batching and carries_rows(feeds, rows):
            self._learn(outputs, rows)
        self._stats.batches += 1
        self._stats.batched_requests += 1
        return outputs

    def _end_tick(self) -> None:
        self._tick = False
        if self._pending:
            self._dispatch()

    def _observe(self, seconds: float, rows: int) -> None:
        per_row = seconds / max(rows, 1)
        cost = self.cost
        self.cost = per_row if cost == math.inf else cost + COST_WEIGHT * (per_row - cost)

    async def drain(self) -> None:
        """Wait until every admitted request has been answered."""
        if self.outstanding:
            self._drained = asyncio.Event()
            await self._drained.wait()

    def _dispatch(self) -> None:
        while self._pending and self._busy < self._slots:
            if self._busy == 0 and self._pending_rows < self._target:
                wait = self._pending[0].since + self._delay - self._loop.time()
                if wait > 0:
                    if self._timer is None:
                        self._timer = self._loop.call_later(wait, self._on_timer)
                    return
            items = self._take()
            now = self._loop.time()
            for it in items:  # the queue wait, for Triton's statistics (triton_compat.py)
                self._stats.queued_seconds += now - it.since
            self._busy += 1
            future = self._loop.run_in_executor(self._executor, self._run, items)
            future.add_done_callback(functools.partial(self._done, items))

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _take(self) -> list[_Item]:
        first = self._pending.popleft()
        items, rows = [first], first.rows
        if first.mergeable and self._batch_major:
            signature = _signature(first.feeds)
            while self._pending and rows + self._pending[0].rows <= self._max_rows:
                head = self._pending[0]
                # Only requests whose rows can be told apart, with inputs that agree beyond
                # the batch dimension, can share a run (the queue stays in arrival order).
                if not head.mergeable or _signature(head.feeds) != signature:
                    break
                items.append(self._pending.popleft())
                rows += head.rows
        self._pending_rows -= rows
        return items

    def _learn(self, outputs: Outputs, rows: int) -> bool:
        """Record whether every output of a run over `rows` rows has them as its first
        dimension; a mismatch stops merging for this version."""
        if all(o.ndim and o.shape[0] == rows for o in outputs):
            self._matched_rows.add(rows)
            return True
        if self._batch_major:
            self._batch_major = False
            log.warning(
                "%s: outputs %s do not follow a batch of %d rows; its requests run one at a "
                "time from now on",
                self._name,
                [list(o.shape) for o in outputs],
                rows,
            )
        return False

    def _splittable(self, outputs: Outputs, rows: int) -> bool:
        """A merged run of `rows` rows can be split: its outputs follow the batch, and runs
        of another size did too (so the match is not a constant first dimension)."""
        if not self._learn(outputs, rows):
            return False
        # `rows` is in the set now; one other size makes two (len() is atomic, unlike
        # iterating a set another pool thread may be adding to).
        return len(self._matched_rows) > 1

    def _run(self, items: list[_Item]) -> list[Result]:
        """Runs in the thread pool: one merged run, split back by rows."""
        if len(items) == 1:
            # Single-request runs keep the cost estimate current; merged ones would bias it.
            return [self._run_one(items[0], measure=True)]
        feeds = {k: np.concatenate([it.feeds[k] for it in items]) for k in items[0].feeds}
        rows = sum(it.rows for it in items)
        try:
            outputs = self._run_model(feeds)
        except ModelFailure:
            # One bad request must not fail its batch-mates: rerun each alone.
            return [self._run_one(it) for it in items]
        if not self._splittable(outputs, rows):
            # Splitting would hand requests rows that are not theirs: run each alone.
            return [self._run_one(it) for it in items]
        results: list[Result] = []
        offset = 0
        for it in items:
            results.append([o[offset : offset + it.rows] for o in outputs])
            offset += it.rows
        return results

    def _run_one(self, item: _Item, measure: bool = False) -> Result:
        clock = self._clock if measure else None
        start = clock() if clock is not None else 0.0
        try:
            outputs = self._run_model(item.feeds)
        except ServingError as exc:
            return exc
        if clock is not None:
            self._observe(clock() - start, item.rows)
        if self._batching and item.shaped:
            self._learn(outputs, item.rows)
        return outputs

    def _done(self, items: list[_Item], future: asyncio.Future[list[Result]]) -> None:
        self._busy -= 1
        self._stats.batches += 1
        self._stats.batched_requests += len(items)
        exc = "cancelled" if future.cancelled() else future.exception()
        for i, it in enumerate(items):
            if it.future.done():  # the client went away and the request was cancelled
                continue
            result = ModelFailure(f"model failed: {exc}") if exc else future.result()[i]
            if isinstance(result, ServingError):
                it.future.set_exception(result)
            else:
                it.future.set_result(result)
        self.outstanding -= len(items)
        if self.outstanding == 0 and self._drained is not None:
            self._drained.set()
        self._dispatch()
