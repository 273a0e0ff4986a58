"""Batch isolation: every answer a batching engine gives equals the unbatched answer.

The checks are plain functions so that a property test (hypothesis, tests/serving/
test_batch_isolation.py) and a long-running fuzz mode can share them:

- `Mix`: a list of requests (named input arrays) with the gaps between their arrivals;
  `mixes(...)` is a hypothesis strategy for them and `random_mix(seed, ...)` draws one from a
  seed, for fuzzing without hypothesis.
- `check_version(version, mix)`: drives a real `ModelVersion` (its `prepare`, its `Batcher`, an
  onnxruntime session) exactly as the inference handler does, all requests in flight together.
- `check_http(url, model, mix, reference, clients)`: concurrent keep-alive clients against a
  running engine.

Each returns a list of one-line mismatch descriptions; an empty list means every request got
its own result. The reference is the same model run on each request alone.
"""

from __future__ import annotations

import asyncio
import http.client
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from hypothesis import strategies as st

from mlops.serving import dtypes
from mlops.serving.codec import InferRequest
from mlops.serving.errors import BadRequest, ServingError
from mlops.serving.version import ModelVersion

Feeds = dict[str, np.ndarray[Any, Any]]
Outputs = list[np.ndarray[Any, Any]]
Reference = Callable[[Feeds], Outputs]  # the model on one request alone; raises ServingError

# Floating-point sums may differ in the last bits between a batch of one and a larger one;
# a neighbour's prediction is orders of magnitude further away than this.
RTOL, ATOL = 1e-5, 1e-6
GAP_SECONDS = 0.0003  # one unit of a real (not loop-turn) arrival gap


@dataclass(frozen=True)
class InputKind:
    """How to make one named input: its datatype and the shape after the batch dimension."""

    name: str
    datatype: str
    trailing: tuple[int, ...] = ()


@dataclass(frozen=True)
class Request:
    feeds: Feeds = field(compare=False)
    gap: int  # 0: same loop turn as the previous request; 1: next turn; n > 1: (n-1) real gaps


@dataclass(frozen=True)
class Mix:
    requests: tuple[Request, ...]

    def describe(self, i: int) -> str:
        shapes = {k: list(v.shape) for k, v in self.requests[i].feeds.items()}
        return f"request {i} {shapes}"


def make_feeds(
    inputs: Sequence[InputKind], rows: int, seed: int, rows_of: dict[str, int] | None = None
) -> Feeds:
    """Random feeds; every row differs from every other, so a mis-split always shows.

    `rows_of` overrides the rows of some inputs (to send disagreeing batch dimensions).
    """
    rng = np.random.default_rng(seed)
    feeds: Feeds = {}
    for kind in inputs:
        n = (rows_of or {}).get(kind.name, rows)
        shape = (n, *kind.trailing)
        dtype = dtypes.V2_TO_NUMPY[kind.datatype]
        if dtype.kind == "f":
            feeds[kind.name] = rng.normal(size=shape).astype(dtype)
        else:
            feeds[kind.name] = rng.integers(-1000, 1000, size=shape).astype(dtype)
    return feeds


@st.composite
def mixes(
    draw: st.DrawFn,
    inputs: Sequence[InputKind],
    max_rows: int,
    widths: Sequence[int] = (),
    max_requests: int = 24,
    disagree: bool = False,
) -> Mix:
    """A hypothesis strategy: requests of 0..max_rows rows with random arrival gaps.

    `widths`: sizes to draw for trailing dimensions given as -1 (models with a free feature
    dimension), so requests of different shapes meet in one queue. `disagree`: sometimes
    give one input a different number of rows than the others (the engine answers 400).
    """
    count = draw(st.integers(1, max_requests))
    requests = []
    for _ in range(count):
        rows = draw(st.integers(0, max_rows))
        width = draw(st.sampled_from(widths)) if widths else 0
        kinds = [
            InputKind(k.name, k.datatype, tuple(width if d < 0 else d for d in k.trailing))
            for k in inputs
        ]
        rows_of = None
        if disagree and len(inputs) > 1 and draw(st.integers(0, 9)) == 0:
            rows_of = {inputs[-1].name: draw(st.integers(0, max_rows + 1))}
        seed = draw(st.integers(0, 2**32 - 1))
        gap = draw(st.sampled_from((0, 0, 0, 1, 1, 2, 3)))
        requests.append(Request(make_feeds(kinds, rows, seed, rows_of), gap))
    return Mix(tuple(requests))


def random_mix(
    seed: int,
    inputs: Sequence[InputKind],
    max_rows: int,
    widths: Sequence[int] = (),
    count: int = 24,
) -> Mix:
    """The same kind of mix as `mixes`, from a seed (for a fuzz loop outside hypothesis)."""
    rng = np.random.default_rng(seed)
    requests = []
    for _ in range(count):
        width = int(rng.choice(widths)) if widths else 0
        kinds = [
            InputKind(k.name, k.datatype, tuple(width if d < 0 else d for d in k.trailing))
            for k in inputs
        ]
        rows = int(rng.integers(0, max_rows + 1))
        gap = int(rng.choice((0, 0, 0, 1, 1, 2, 3)))
        requests.append(Request(make_feeds(kinds, rows, int(rng.integers(2**32))), gap))
    return Mix(tuple(requests))


async def _arrive(gap: int) -> None:
    if gap == 1:
        await asyncio.sleep(0)
    elif gap > 1:
        await asyncio.sleep((gap - 1) * GAP_SECONDS)


def _request(feeds: Feeds) -> InferRequest:
    types = {k: dtypes.NUMPY_TO_V2[v.dtype] for k, v in feeds.items()}
    return InferRequest(None, dict(feeds), types, None, frozenset(), False)


async def serve(version: ModelVersion, feeds: Feeds) -> Outputs:
    """What mlops.serving.infer.handle does between decoding and encoding."""
    prepared, rows = version.prepare(_request(feeds))
    outputs = version.batcher.run_inline(prepared, rows)
    if outputs is None:
        outputs = await version.batcher.submit(prepared, rows)
    return outputs


async def check_version(version: ModelVersion, mix: Mix) -> list[str]:
    """Send the whole mix to one loaded version, then compare each answer with the request
    run alone (validated by the same `prepare`, then run by the same session)."""
    tasks: list[asyncio.Future[Outputs]] = []
    for request in mix.requests:
        await _arrive(request.gap)
        tasks.append(asyncio.ensure_future(serve(version, request.feeds)))
    answers = await asyncio.gather(*tasks, return_exceptions=True)

    def alone(feeds: Feeds) -> Outputs:
        prepared, _ = version.prepare(_request(feeds))
        return version.session.run(prepared)

    return [
        f"{mix.describe(i)}: {problem}"
        for i, (request, answer) in enumerate(zip(mix.requests, answers, strict=True))
        if (problem := _compare(answer, _expected(alone, request.feeds))) is not None
    ]


def _expected(reference: Reference, feeds: Feeds) -> Outputs | ServingError:
    try:
        return reference(feeds)
    except ServingError as exc:
        return exc


def _compare(answer: Any, expected: Outputs | ServingError) -> str | None:
    if isinstance(expected, ServingError):
        if isinstance(answer, ServingError) and answer.status == expected.status:
            return None
        return f"expected error {expected.status} ({expected.message}), got {_show(answer)}"
    if isinstance(answer, BaseException):
        return f"expected a result, got {_show(answer)}"
    if len(answer) != len(expected):
        return f"{len(answer)} outputs, expected {len(expected)}"
    for j, (got, want) in enumerate(zip(answer, expected, strict=True)):
        if got.shape != want.shape or got.dtype != want.dtype:
            want_type = f"{want.dtype}{list(want.shape)}"
            return f"output {j} is {got.dtype}{list(got.shape)}, expected {want_type}"
        if not np.allclose(got, want, rtol=RTOL, atol=ATOL):
            return f"output {j} differs from the unbatched result"
    return None


def _show(answer: Any) -> str:
    if isinstance(answer, ServingError):
        return f"error {answer.status} ({answer.message})"
    if isinstance(answer, BaseException):
        return f"{type(answer).__name__}: {answer}"
    return "a result"


def _body(feeds: Feeds) -> bytes:
    return orjson.dumps(
        {
            "inputs": [
                {
                    "name": k,
                    "datatype": dtypes.NUMPY_TO_V2[v.dtype],
                    "shape": list(v.shape),
                    "data": v.reshape(-1),
                }
                for k, v in feeds.items()
            ]
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def _decode(status: int, body: bytes) -> Outputs | ServingError:
    doc = orjson.loads(body)
    if status != 200:
        error = ServingError(str(doc.get("error")))
        error.status = status
        return error
    return [
        np.asarray(o["data"], dtype=dtypes.V2_TO_NUMPY[o["datatype"]]).reshape(o["shape"])
        for o in doc["outputs"]
    ]


def check_http(url: str, model: str, mix: Mix, reference: Reference, clients: int = 6) -> list[str]:
    """Send the mix from `clients` concurrent keep-alive connections (request i from client
    i % clients, each client in order, with the mix's gaps) and compare each response with
    `reference` on that request alone (a model error or a 400 must come back as the same
    status class)."""
    host, port = url.removeprefix("http://").split(":")
    answers: dict[int, Outputs | ServingError] = {}
    start = threading.Barrier(clients)

    def client(c: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        start.wait()
        try:
            for i in range(c, len(mix.requests), clients):
                request = mix.requests[i]
                if request.gap > 1:
                    time.sleep((request.gap - 1) * GAP_SECONDS)
                conn.request(
                    "POST",
                    f"/v2/models/{model}/infer",
                    _body(request.feeds),
                    {"Content-Type": "application/json"},
                )
                response = conn.getresponse()
                answers[i] = _decode(response.status, response.read())
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    problems = []
    for i, request in enumerate(mix.requests):
        if i not in answers:
            problems.append(f"{mix.describe(i)}: no response")
            continue
        problem = _compare_http(answers[i], _expected(reference, request.feeds))
        if problem is not None:
            problems.append(f"{mix.describe(i)}: {problem}")
    return problems


def _compare_http(answer: Outputs | ServingError, expected: Outputs | ServingError) -> str | None:
    if isinstance(expected, ServingError) and isinstance(answer, ServingError):
        # The reference does not run the engine's validation: compare the class of status.
        return None if answer.status // 100 == expected.status // 100 else _show(answer)
    if isinstance(expected, BadRequest):
        return f"expected 400, got {_show(answer)}"
    return _compare(answer, expected)
