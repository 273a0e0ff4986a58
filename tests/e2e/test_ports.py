"""The end-to-end harness takes its serve port from the kernel and needs no block of free
ports (issue 10: "no free port block" failed `make test` on busy machines)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlops.providers.engine.runtime import LocalRuntime
from mlops.spec import models as spec
from mlops.workspace import Workspace
from tests.e2e import conftest


@pytest.fixture
def taken_admin_port() -> Iterator[int]:
    """A serve port whose default admin port (port + 1000) another program listens on."""
    with socket.socket() as blocker:
        for _ in range(100):
            blocker_port = conftest.free_port()
            if blocker_port > 2024:
                break
        blocker.bind(("127.0.0.1", blocker_port))
        blocker.listen()
        yield blocker_port - 1000


def test_a_taken_admin_port_does_not_stop_the_harness(
    taken_admin_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(conftest, "free_port", lambda: taken_admin_port)
    assert conftest.free_port_block() == taken_admin_port


def test_kernel_ports_are_bindable_the_way_the_engine_binds() -> None:
    port = conftest.free_port()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


@pytest.mark.slow
def test_the_engine_serves_on_a_port_whose_admin_neighbour_is_taken(
    taken_admin_port: int, tmp_path: Path
) -> None:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", taken_admin_port))
        except OSError:
            pytest.skip(f"port {taken_admin_port} is in use by another program")
    config = spec.WorkspaceConfig(serve=spec.WorkspaceServe(port=taken_admin_port))
    runtime = LocalRuntime(Workspace(root=tmp_path.resolve(), config=config))
    runtime.start(2)
    try:
        (admin_url, _) = runtime.worker_admin_urls()
        assert not admin_url.endswith(f":{taken_admin_port + 1000}")
        live = httpx.get(f"{runtime.inference_url()}/v2/health/live", timeout=10)
        assert live.status_code == 200
    finally:
        runtime.stop()
