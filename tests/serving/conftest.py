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


ADMIN_TOKEN = "test-admin-token"


def admin_token_file(directory: Path, token: str = ADMIN_TOKEN) -> Path:
    path = directory / "admin-token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


class EngineThread:
    """One engine worker on a free loopback port, served by uvicorn in a background thread,
    with its admin socket on a second port (`admin_url`) as a worker process has."""

    def __init__(
        self, config: ServeConfig, routing_file: Path | None = None, wait_ready: bool = True
    ) -> None:
        self.engine = Engine(config, routing_file=routing_file)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._sock = bind("127.0.0.1", self.port, True)
        self._admin_sock = bind("127.0.0.1", 0, False)
        self.admin_port = int(self._admin_sock.getsockname()[1])
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        self.engine.serve_admin_on(self.admin_port)
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.engine, http="httptools", lifespan="on", access_log=False, log_level="error"
            )
        )
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 60
        # Ready, or with wait_ready=False only past start-up loading (a load may have failed).
        while not (
            self.server.started
            and (
                self.engine.repository.ready()
                or not (wait_ready or self.engine.repository.starting)
            )
        ):
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("engine did not become ready")
            time.sleep(0.01)

    def _run(self) -> None:
        import uvloop

        self.loop = uvloop.new_event_loop()
        self.loop.run_until_complete(self.server.serve(sockets=[self._sock, self._admin_sock]))

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
    config = ServeConfig(
        repository=repo,
        state_dir=state,
        max_body_bytes=1 << 20,
        admin_token_file=admin_token_file(state),
    )
    server = EngineThread(config)
    yield server
    server.stop()


@pytest.fixture()
def client(engine: EngineThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=engine.url, timeout=30) as c:
        yield c


@pytest.fixture()
def admin(engine: EngineThread) -> Iterator[httpx.Client]:
    """The engine's admin address, with its token: load, unload and routing go here."""
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=engine.admin_url, timeout=60, headers=headers) as c:
        yield c
