"""Large request bodies: decoded off the event loop, within a per-worker memory budget
(issue 9, finding 11).

Nothing here measures time. The decoder process is paused with SIGSTOP: while it is stopped a
large request provably cannot have been decoded, so any answer the engine gives meanwhile
(health, a small inference, a 503) shows that the event loop did not wait for the decode.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import orjson
import pytest

from mlops.serving import codec, intake
from mlops.serving.config import ServeConfig
from mlops.serving.errors import BadRequest
from tests.serving import fixtures
from tests.serving.conftest import EngineThread

MAX_BODY = 1 << 20  # the engine's body limit here: budget 2 MiB, large above 256 KiB
LARGE_ROWS = 4500  # about 700 KiB of JSON with 8 features: two fit the budget, three do not


def _body(rows: int, seed: int = 0) -> tuple[bytes, np.ndarray[Any, Any]]:
    x = np.random.default_rng(seed).normal(size=(rows, fixtures.FEATURES)).astype(np.float32)
    doc = {
        "inputs": [
            {"name": "input", "datatype": "FP32", "shape": list(x.shape), "data": x.tolist()}
        ]
    }
    return orjson.dumps(doc), x


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineThread]:
    root = tmp_path_factory.mktemp("large")
    fixtures.write_version(
        root, "clf", "1", fixtures.classifier_bytes(), fixtures.classifier_settings()
    )
    state = tmp_path_factory.mktemp("large-state")
    server = EngineThread(ServeConfig(repository=root, state_dir=state, max_body_bytes=MAX_BODY))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def reference() -> Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]]:
    session = ort.InferenceSession(fixtures.classifier_bytes(), providers=["CPUExecutionProvider"])

    def run(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.asarray(session.run(["probabilities"], {"input": x})[0])

    return run


class _Post(threading.Thread):
    """One inference request on its own connection, in the background."""

    def __init__(self, url: str, body: bytes) -> None:
        super().__init__(daemon=True)
        self.url, self.body = url, body
        self.status: int | None = None
        self.doc: Any = None

    def run(self) -> None:
        host, port = self.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        try:
            conn.request("POST", "/v2/models/clf/infer", self.body)
            response = conn.getresponse()
            self.status, self.doc = response.status, orjson.loads(response.read())
        finally:
            conn.close()


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.005)


@contextlib.contextmanager
def _paused(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):  # a test may have killed it
            os.kill(pid, signal.SIGCONT)


def _decoder_pid(engine: EngineThread) -> int:
    """Start the decoder process (one large request) and return its pid."""
    post = _Post(engine.url, _body(LARGE_ROWS)[0])
    post.run()
    assert post.status == 200, post.doc
    pid = engine.engine.intake.pid
    assert pid is not None
    return pid


def _probabilities(doc: Any) -> np.ndarray[Any, Any]:
    out = doc["outputs"][0]
    return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])


def test_small_bodies_are_decoded_on_the_loop_without_the_budget(engine: EngineThread) -> None:
    intake_ = engine.engine.intake
    jobs_before = intake_.pending
    with httpx.Client(base_url=engine.url) as client:
        body, _ = _body(4)
        assert len(body) < intake.INLINE_MAX_BYTES
        response = client.post("/v2/models/clf/infer", content=body)
    assert response.status_code == 200
    assert (intake_.pending, intake_.held_bytes) == (jobs_before, 0)


def test_the_loop_serves_others_while_a_large_body_is_being_decoded(
    engine: EngineThread, reference: Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]]
) -> None:
    pid = _decoder_pid(engine)
    body, x = _body(LARGE_ROWS, seed=1)
    small, small_x = _body(2, seed=2)
    large = _Post(engine.url, body)
    with _paused(pid):
        large.start()
        _wait_for(lambda: engine.engine.intake.pending == 1, "the large body reached the decoder")
        # The decoder is stopped, so the large body is not decoded; the loop still answers.
        with httpx.Client(base_url=engine.url, timeout=30) as client:
            assert client.get("/v2/health/live").status_code == 200
            answer = client.post("/v2/models/clf/infer", content=small)
        assert answer.status_code == 200
        assert np.allclose(_probabilities(answer.json()), reference(small_x), atol=1e-6)
        assert large.status is None and engine.engine.intake.pending == 1
    large.join(60)
    assert large.status == 200, large.doc
    assert np.allclose(_probabilities(large.doc), reference(x), atol=1e-6)
    assert engine.engine.intake.held_bytes == 0


def test_large_bodies_beyond_the_budget_are_refused_at_once(engine: EngineThread) -> None:
    pid = _decoder_pid(engine)
    intake_ = engine.engine.intake
    body, _ = _body(LARGE_ROWS, seed=3)
    assert 2 * len(body) <= intake_.budget_bytes < 3 * len(body)
    first, second = _Post(engine.url, body), _Post(engine.url, body)
    with _paused(pid):
        first.start()
        second.start()
        _wait_for(lambda: intake_.held_bytes == 2 * len(body), "two large bodies admitted")
        third = _Post(engine.url, body)
        third.run()  # answered while the decoder is stopped: it never waited for a decode
        assert third.status == 503, third.doc
        assert "budget" in third.doc["error"]
        assert intake_.held_bytes == 2 * len(body)  # the refusal reserved nothing
    first.join(60)
    second.join(60)
    assert (first.status, second.status) == (200, 200)
    assert intake_.held_bytes == 0


def test_a_killed_decoder_fails_its_request_with_503_and_is_replaced(
    engine: EngineThread,
) -> None:
    pid = _decoder_pid(engine)
    large = _Post(engine.url, _body(LARGE_ROWS, seed=4)[0])
    with _paused(pid):
        large.start()
        _wait_for(lambda: engine.engine.intake.pending == 1, "the large body reached the decoder")
        os.kill(pid, signal.SIGKILL)
    large.join(60)
    assert large.status == 503, large.doc
    assert _decoder_pid(engine) != pid
    assert engine.engine.intake.held_bytes == 0


# -- the decoder process itself ---------------------------------------------------------------


def _decode_both(body: bytes, header_length: int | None = None) -> tuple[Any, Any]:
    """(inline result, decoder-process result): each an InferRequest or the BadRequest."""

    async def offloaded() -> Any:
        worker = intake.Intake(64 << 20, inline_max_bytes=0)  # everything goes to the process
        try:
            return await worker.decode(body, header_length)
        except BadRequest as exc:
            return exc
        finally:
            await worker.close()

    try:
        inline: Any = codec.decode(body, header_length)
    except BadRequest as exc:
        inline = exc
    return inline, asyncio.run(offloaded())


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, BadRequest) or isinstance(b, BadRequest):
        return isinstance(a, BadRequest) and isinstance(b, BadRequest) and a.message == b.message
    same_arrays = a.inputs.keys() == b.inputs.keys() and all(
        a.inputs[k].dtype == b.inputs[k].dtype and np.array_equal(a.inputs[k], b.inputs[k])
        for k in a.inputs
    )
    rest = ("id", "datatypes", "outputs", "binary_outputs", "binary_all", "finite")
    return same_arrays and all(getattr(a, f) == getattr(b, f) for f in rest)


def _binary_body() -> tuple[bytes, int]:
    blob = np.arange(6, dtype=np.int32)
    header = orjson.dumps(
        {
            "id": "req-1",
            "inputs": [
                {"name": "a", "datatype": "INT32", "shape": [2, 3], "parameters": {
                    "binary_data_size": blob.nbytes}},
                {"name": "b", "datatype": "BOOL", "shape": [2], "data": [True, False]},
                {"name": "c", "datatype": "FP16", "shape": [0, 4], "data": []},
                {"name": "d", "datatype": "UINT64", "shape": [1], "data": [2**64 - 1]},
            ],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}, {"name": "z"}],
            "parameters": {"binary_data_output": False},
        }
    )  # fmt: skip
    return header + blob.tobytes(), len(header)


@pytest.mark.parametrize(
    "case",
    [
        "nested",
        "binary",
        "malformed",
        "out-of-range",
        "header-outside",
    ],
)
def test_the_decoder_process_decodes_exactly_like_the_inline_path(case: str) -> None:
    header_length: int | None = None
    if case == "nested":
        body = _body(50, seed=5)[0]
    elif case == "binary":
        body, header_length = _binary_body()
    elif case == "malformed":
        body = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1.0'
    elif case == "out-of-range":
        body = orjson.dumps({"inputs": [{"name": "x", "datatype": "UINT8", "shape": [2],
                                         "data": [-1, 300]}]})  # fmt: skip
    else:
        body, header_length = b"{}", 5
    inline, offloaded = _decode_both(body, header_length)
    assert _same(inline, offloaded), (inline, offloaded)


def test_engine_shutdown_ends_the_decoder_process(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp("large-stop")
    fixtures.write_version(
        root, "clf", "1", fixtures.classifier_bytes(), fixtures.classifier_settings()
    )
    state = tmp_path_factory.mktemp("large-stop-state")
    server = EngineThread(ServeConfig(repository=root, state_dir=state, max_body_bytes=MAX_BODY))
    try:
        pid = _decoder_pid(server)
    finally:
        server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
