"""Helpers shared by the runtime, metrics and conformance tests (imported, not conftest)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from mlops.providers.engine.runtime import LocalRuntime
from mlops.spec import models as spec
from mlops.workspace import Workspace
from tests.serving import fixtures


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_workspace(root: Path) -> Workspace:
    config = spec.WorkspaceConfig(serve=spec.WorkspaceServe(port=free_port()))
    return Workspace(root=root.resolve(), config=config)


@contextmanager
def running(workspace: Workspace, replicas: int = 2) -> Iterator[LocalRuntime]:
    rt = LocalRuntime(workspace)
    rt.start(replicas)
    try:
        yield rt
    finally:
        rt.stop()


def classifier_artifact(directory: Path, seed: int = 0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"classifier-{seed}.onnx"
    path.write_bytes(fixtures.classifier_bytes(seed))
    return path


def rows(n: int, features: int = fixtures.FEATURES, seed: int = 0) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).normal(size=(n, features)).astype(np.float32)
