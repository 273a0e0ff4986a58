"""Batched requests never receive each other's outputs (issue 9, finding 1).

Real onnxruntime sessions loaded by the real Repository; the checks are in isolation.py.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from onnx import TensorProto, helper

from mlops.serving.config import ServeConfig
from mlops.serving.errors import ModelFailure
from mlops.serving.repository import Repository
from mlops.serving.stats import StatsBook
from mlops.serving.version import ModelVersion
from tests.serving import fixtures, isolation
from tests.serving.conftest import EngineThread
from tests.serving.isolation import InputKind, Mix, Request
from tests.support import logistic_onnx

T = TypeVar("T")
FEATURES = 8
LOGISTIC = [InputKind("input", "FP32", (FEATURES,))]
ROWWISE = [InputKind("a", "FP32", (-1,)), InputKind("b", "INT64")]
COLSUM = [InputKind("a", "FP32", (-1,))]
# Batching set-ups a logistic-regression version is loaded with (name -> settings.batching).
BATCHINGS: dict[str, dict[str, Any]] = {
    "b2": {"max_batch_size": 2},
    "b16": {"max_batch_size": 16, "max_queue_delay_ms": 1},
    "preferred": {"max_batch_size": 16, "preferred_batch_sizes": [4, 8], "max_queue_delay_ms": 2},
    "concurrent": {"max_batch_size": 8, "max_concurrent_batches": 2},
    "off": {},
}


def _logistic() -> bytes:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, FEATURES)).astype(np.float32)
    y = (x[:, 0] - x[:, 2] > 0).astype(np.int64)
    return logistic_onnx(x, y)[1]


def _logistic_settings(batching: dict[str, Any]) -> dict[str, Any]:
    return {
        "signature": {
            "inputs": [{"name": "input", "dtype": "FP32", "shape": [-1, FEATURES]}],
            "outputs": [
                {"name": "label", "dtype": "INT64", "shape": [-1]},
                {"name": "probabilities", "dtype": "FP32", "shape": [-1, 2]},
            ],
        },
        "batching": batching,
    }


def _graph_bytes(
    nodes: list[Any], inputs: list[Any], outputs: list[Any], inits: list[Any] | None = None
) -> bytes:
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _rowwise() -> bytes:
    """Two inputs with a free feature width: y = 2a, s = rowsum(a) + b (rows independent)."""
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    return _graph_bytes(
        [
            helper.make_node("Mul", ["a", "two"], ["y"]),
            helper.make_node("ReduceSum", ["a", "axes"], ["r"], keepdims=0),
            helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["r", "bf"], ["s"]),
        ],
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", "K"]),
            helper.make_tensor_value_info("b", TensorProto.INT64, ["N"]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "K"]),
            helper.make_tensor_value_info("s", TensorProto.FLOAT, ["N"]),
        ],
        [axes, two],
    )


def _colsum() -> bytes:
    """A model whose output is not batch-major: the column sums of its input, shape [K]."""
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [0])
    return _graph_bytes(
        [helper.make_node("ReduceSum", ["a", "axes"], ["c"], keepdims=0)],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", "K"])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, ["K"])],
        [axes],
    )


Tensors = list[tuple[str, str, list[int]]]


def _signature(inputs: Tensors, outputs: Tensors) -> dict[str, Any]:
    def tensors(items: Tensors) -> list[dict[str, Any]]:
        return [{"name": n, "dtype": d, "shape": s} for n, d, s in items]

    return {"inputs": tensors(inputs), "outputs": tensors(outputs)}


def _write_repository(root: Path) -> None:
    logistic = _logistic()
    for version, batching in BATCHINGS.items():
        fixtures.write_version(root, "logistic", version, logistic, _logistic_settings(batching))
    fixtures.write_version(
        root,
        "rowwise",
        "1",
        _rowwise(),
        {
            "signature": _signature(
                [("a", "FP32", [-1, -1]), ("b", "INT64", [-1])],
                [("y", "FP32", [-1, -1]), ("s", "FP32", [-1])],
            ),
            "batching": {"max_batch_size": 12, "max_queue_delay_ms": 1},
            "classification": False,
        },
    )
    fixtures.write_version(
        root,
        "colsum",
        "1",
        _colsum(),
        {
            "signature": _signature([("a", "FP32", [-1, -1])], [("c", "FP32", [-1])]),
            "batching": {"max_batch_size": 8},
            "classification": False,
        },
    )


class _Loop:
    """An event loop in a thread, so one Repository serves every hypothesis example."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[_Loop, Repository]]:
    root = tmp_path_factory.mktemp("isolation")
    _write_repository(root)
    loop = _Loop()
    pool = ThreadPoolExecutor(2, thread_name_prefix="test-infer")

    async def load() -> Repository:
        repo = Repository(root, pool, 2, 1, StatsBook(), on_change=lambda: None)
        for name, version in repo.on_disk():
            await repo.load(name, version, None)
        repo.starting = False
        return repo

    repo = loop.call(load())
    yield loop, repo
    loop.stop()
    pool.shutdown()


def _version(loaded: tuple[_Loop, Repository], name: str, version: str) -> ModelVersion:
    return loaded[1].get(name, version)


def _check(loaded: tuple[_Loop, Repository], name: str, version: str, mix: Mix) -> list[str]:
    return loaded[0].call(isolation.check_version(_version(loaded, name, version), mix))


def _same_turn(kinds: list[InputKind], rows: list[int], width: int = 0) -> Mix:
    shaped = [
        InputKind(k.name, k.datatype, tuple(width if d < 0 else d for d in k.trailing))
        for k in kinds
    ]
    return Mix(
        tuple(Request(isolation.make_feeds(shaped, r, seed), 0) for seed, r in enumerate(rows))
    )


# -- the reported case and the other ways a split can go wrong --------------------------------


def test_a_zero_row_request_does_not_shift_its_batch_mates_outputs(loaded: Any) -> None:
    # The reported leak: [0, F] queued with one-row requests was counted as one row, so each
    # following client got its neighbour's predictions and the last got [].
    mix = _same_turn(LOGISTIC, [1, 0, 1, 1, 0, 1, 1])
    stats = _version(loaded, "logistic", "b16").stats
    before = (stats.batches, stats.batched_requests)
    assert _check(loaded, "logistic", "b16", mix) == []
    assert stats.batched_requests - before[1] > stats.batches - before[0], "no batch formed"


def test_a_zero_row_request_gets_an_empty_result(loaded: Any) -> None:
    mix = _same_turn(LOGISTIC, [1, 0, 1])
    version = _version(loaded, "logistic", "b16")

    async def send() -> list[Any]:
        return list(
            await asyncio.gather(*(isolation.serve(version, r.feeds) for r in mix.requests))
        )

    answers = loaded[0].call(send())
    label, probabilities = answers[1]
    assert (label.shape, probabilities.shape) == ((0,), (0, 2))


def test_outputs_that_are_not_batch_major_are_never_split(loaded: Any) -> None:
    # Column sums have shape [K], whatever the batch: no way to split them back by rows, so
    # every request must be answered from its own run (including a batch whose total rows
    # happen to equal K).
    for width, rows in ((3, [1, 1, 1, 1, 2]), (3, [1, 2, 1]), (4, [2, 2, 1, 3])):
        mix = _same_turn(COLSUM, rows, width)
        assert _check(loaded, "colsum", "1", mix) == []


def test_a_caller_whose_rows_disagree_with_its_feeds_is_run_alone(loaded: Any) -> None:
    # Batcher.submit takes the row count from its caller (the handler, the shadow mirror):
    # feeds whose first dimension differs from it must not join a split.
    version = _version(loaded, "logistic", "b16")
    feeds = [
        isolation.make_feeds([LOGISTIC[0]], rows, seed) for seed, rows in enumerate([1, 2, 1, 1])
    ]
    claimed = [1, 1, 1, 1]  # the second request claims one row but carries two

    async def send() -> list[Any]:
        first = version.batcher.submit(feeds[0], claimed[0])  # holds the only batch slot
        rest = [version.batcher.submit(f, n) for f, n in zip(feeds[1:], claimed[1:], strict=True)]
        return list(await asyncio.gather(first, *rest))

    answers = loaded[0].call(send())
    for f, answer in zip(feeds, answers, strict=True):
        expected = version.session.run(f)
        assert [a.shape for a in answer] == [e.shape for e in expected]
        assert all(
            np.allclose(a, e, rtol=1e-5, atol=1e-6) for a, e in zip(answer, expected, strict=True)
        )


def test_requests_with_disagreeing_batch_dimensions_are_refused_and_others_unharmed(
    loaded: Any,
) -> None:
    rows_of = {"b": 3}
    shaped = [InputKind("a", "FP32", (5,)), InputKind("b", "INT64")]
    requests = [
        Request(isolation.make_feeds(shaped, 1, 0), 0),
        Request(isolation.make_feeds(shaped, 2, 1, rows_of), 0),
        Request(isolation.make_feeds(shaped, 1, 2), 0),
        Request(isolation.make_feeds(shaped, 2, 3), 0),
    ]
    assert _check(loaded, "rowwise", "1", Mix(tuple(requests))) == []


# -- the property: any mix of sizes, shapes and arrival times ---------------------------------

_PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_PROPERTY
@given(mix=isolation.mixes(LOGISTIC, max_rows=16))
@pytest.mark.parametrize("version", sorted(BATCHINGS))
def test_every_answer_equals_the_unbatched_answer(loaded: Any, version: str, mix: Mix) -> None:
    # Versions with a max_batch_size under 16 answer 400 to larger requests, alone or not.
    assert _check(loaded, "logistic", version, mix) == []


@_PROPERTY
@given(mix=isolation.mixes(ROWWISE, max_rows=12, widths=(2, 3, 5), disagree=True))
def test_every_answer_equals_the_unbatched_answer_for_mixed_shapes(loaded: Any, mix: Mix) -> None:
    assert _check(loaded, "rowwise", "1", mix) == []


@_PROPERTY
@given(mix=isolation.mixes(COLSUM, max_rows=8, widths=(2, 3, 4, 8)))
def test_every_answer_equals_the_unbatched_answer_when_outputs_are_not_batch_major(
    loaded: Any, mix: Mix
) -> None:
    assert _check(loaded, "colsum", "1", mix) == []


def test_random_mixes_from_seeds(loaded: Any) -> None:
    # The seed-driven variant a fuzz loop uses, run for a few seeds here.
    for seed in range(10):
        mix = isolation.random_mix(seed, ROWWISE, max_rows=12, widths=(2, 3))
        assert _check(loaded, "rowwise", "1", mix) == [], f"seed {seed}"


# -- through the engine's HTTP front door, with concurrent clients ----------------------------


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineThread]:
    root = tmp_path_factory.mktemp("isolation-engine")
    _write_repository(root)
    state = tmp_path_factory.mktemp("isolation-state")
    server = EngineThread(ServeConfig(repository=root, state_dir=state, max_body_bytes=1 << 20))
    yield server
    server.stop()


def _reference(model: bytes) -> isolation.Reference:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])

    def run(feeds: isolation.Feeds) -> isolation.Outputs:
        try:
            outputs: isolation.Outputs = session.run(None, feeds)
        except Exception as exc:
            raise ModelFailure(str(exc)) from None
        return outputs

    return run


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mix=isolation.mixes(LOGISTIC, max_rows=8, max_requests=80))
def test_concurrent_http_clients_each_get_their_own_predictions(
    engine: EngineThread, mix: Mix
) -> None:
    reference = _reference(_logistic())
    assert isolation.check_http(engine.url, "logistic/versions/b16", mix, reference) == []


def test_a_zero_row_sender_among_concurrent_http_clients(engine: EngineThread) -> None:
    # The reported scenario: six clients plus one that sends zero-row requests.
    stats = engine.engine.stats.get("logistic", "b16")
    before = (stats.batches, stats.batched_requests)
    rows = [0 if i % 7 == 6 else 1 for i in range(700)]
    mix = Mix(
        tuple(Request(isolation.make_feeds(LOGISTIC, r, seed), 0) for seed, r in enumerate(rows))
    )
    reference = _reference(_logistic())
    assert isolation.check_http(engine.url, "logistic/versions/b16", mix, reference, 7) == []
    batches, requests = stats.batches - before[0], stats.batched_requests - before[1]
    assert requests > batches, "no batch formed: the test proved nothing"
