"""Registry contract fixtures: the same tests run against MLflow on sqlite and against a real
`mlflow server` on loopback (session-scoped, `slow`)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlops.providers.mlflow.registry import MlflowRegistry
from tests.registry import support


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """model.onnx and other.onnx (same interface, different bytes), val.npz."""
    root = tmp_path_factory.mktemp("models")
    support.train(root / "model.onnx", seed=1)
    support.train(root / "other.onnx", seed=2)
    support.validation(root / "val.npz")
    return root


@pytest.fixture
def ws(tmp_path: Path, models_dir: Path) -> Path:
    """A workspace with models/ holding the trained artifacts and validation data."""
    root = tmp_path / "ws"
    shutil.copytree(models_dir, root / "models")
    return root


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, fully migrated MLflow database: copying it saves seconds per test."""
    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowRegistry(f"sqlite:///{db}", db.parent / "artifacts").initialise()
    return db


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = (root / "server.log").open("wb")
    cmd = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
        "--artifacts-destination", str(root / "artifacts"), "--workers", "1",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):  # the first start migrates the database: allow two minutes
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited: {(root / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not become healthy")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)  # `mlflow server` is slow to exit on SIGTERM alone
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
        log.close()


@pytest.fixture(params=["sqlite", pytest.param("server", marks=pytest.mark.slow)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_registry(
    backend: str, ws: Path, request: pytest.FixtureRequest
) -> Callable[[], MlflowRegistry]:
    """A registry for the workspace: a fresh sqlite copy, or the shared server."""
    if backend == "server":
        url = request.getfixturevalue("mlflow_server")
        return lambda: MlflowRegistry(url, ws / ".mlops" / "artifacts", workspace=ws)
    template = request.getfixturevalue("sqlite_template")
    db = ws / ".mlops" / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, db)
    return lambda: MlflowRegistry(f"sqlite:///{db}", ws / ".mlops" / "artifacts", workspace=ws)


@pytest.fixture
def registry(make_registry: Callable[[], MlflowRegistry]) -> MlflowRegistry:
    return make_registry()


@pytest.fixture
def name() -> Callable[[str], str]:
    """Unique model names: the server is shared by every test of the session."""
    suffix = uuid.uuid4().hex[:6]
    return lambda base: f"{base}-{suffix}"
