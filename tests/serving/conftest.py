"""Engine test harness: a repository of generated models and an in-process engine server."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from mlops.serving.app import Engine
from mlops.serving.config import ServeConfig
from mlops.serving.worker import bind
from tests.serving import fixtures


def infer_body(
    rows: int = 1, value: float = 0.5, features: int = fixtures.FEATURES
) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input",
                "datatype": "FP32",
                "shape": [rows, features],
                "data": [value] * (rows * features),
            }
        ]
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EngineThread:
    """One engine worker on a free loopback port, served by uvicorn in a background thread."""

    def __init__(self, config: ServeConfig) -> None:
        self.engine = Engine(config)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._sock = bind("127.0.0.1", self.port, True)
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.engine, http="httptools", lifespan="on", access_log=False, log_level="error"
            )
        )
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 60
        while not (self.server.started and self.engine.repository.ready()):
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("engine did not become ready")
            time.sleep(0.01)

    def _run(self) -> None:
        import uvloop

        self.loop = uvloop.new_event_loop()
        self.loop.run_until_complete(self.server.serve(sockets=[self._sock]))

    def call(self, coro: Any) -> Any:
        """Run a coroutine on the engine's loop (for direct access in tests)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)


@pytest.fixture(scope="session")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repository")
    clf = fixtures.classifier_bytes(seed=0)
    fixtures.write_version(root, "clf", "1.0.0", clf, fixtures.classifier_settings())
    fixtures.write_version(
        root, "clf", "1.1.0", fixtures.classifier_bytes(seed=1), fixtures.classifier_settings()
    )
    fixtures.write_version(
        root, "batched", "1.0.0", clf,
        fixtures.classifier_settings(max_batch_size=32, max_queue_delay_ms=2),
    )  # fmt: skip
    fixtures.write_version(
        root, "slow", "1.0.0", fixtures.slow_bytes(), fixtures.slow_settings(max_batch_size=16)
    )
    fixtures.write_version(
        root,
        "err",
        "1.0.0",
        fixtures.erroring_bytes(),
        fixtures.erroring_settings(max_batch_size=8),
    )
    return root


@pytest.fixture(scope="session")
def engine(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineThread]:
    state = tmp_path_factory.mktemp("state")
    server = EngineThread(ServeConfig(repository=repo, state_dir=state, max_body_bytes=1 << 20))
    yield server
    server.stop()


@pytest.fixture()
def client(engine: EngineThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=engine.url, timeout=30) as c:
        yield c
