"""The free-port checks of the controller (`engine_process._free`) and of the engine
(`worker.ensure_free`) judge a port the way the engine binds it (SO_REUSEADDR): sockets left
in TIME_WAIT by a stopped engine are no obstacle, a live listener always is."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from mlops import errors
from mlops.providers.engine import process as engine_process
from mlops.providers.engine.runtime import LocalRuntime
from mlops.serving import worker
from mlops.workspace import Workspace

HOST = "127.0.0.1"
# State codes in /proc/net/tcp of the sockets a server leaves behind when it closes first:
# FIN_WAIT1, FIN_WAIT2 (the client has not closed yet) and TIME_WAIT.
LEFT_OVER = {"04", "05", "06"}
TIME_WAIT = {"06"}


def sockets_on(port: int, states: set[str]) -> int:
    count = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] in states:
                count += 1
    return count


def leave_time_wait(port: int | None = None, connections: int = 5) -> int:
    """Listen the way the engine does, accept clients, close the server side first (as an engine
    that stops with clients connected does), then stop listening: the port is left holding
    server-side TIME_WAIT sockets only."""
    listener = worker.bind(HOST, port or 0, reuse_port=True)
    listener.setblocking(True)
    port = int(listener.getsockname()[1])
    pairs = []
    for _ in range(connections):
        client = socket.create_connection((HOST, port))
        server, _ = listener.accept()
        pairs.append((client, server))
    for _client, server in pairs:
        server.close()
    for client, _server in pairs:
        client.recv(1)  # the server's FIN has arrived
        client.close()
    listener.close()
    deadline = time.monotonic() + 5
    while sockets_on(port, TIME_WAIT) < connections and time.monotonic() < deadline:
        time.sleep(0.01)
    return port


@pytest.fixture
def foreign_listener() -> Iterator[int]:
    """Another process listening with SO_REUSEADDR and SO_REUSEPORT (as a second engine would)."""
    code = (
        "import socket, sys\n"
        "s = socket.socket()\n"
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)\n"
        f"s.bind(({HOST!r}, 0)); s.listen()\n"
        "print(s.getsockname()[1], flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()


def test_time_wait_sockets_do_not_make_a_port_busy() -> None:
    port = leave_time_wait()
    assert sockets_on(port, TIME_WAIT) > 0  # the situation under test is really there
    assert engine_process._free(HOST, port)
    worker.ensure_free(HOST, port)  # no error


def test_a_live_listener_is_detected(foreign_listener: int) -> None:
    assert not engine_process._free(HOST, foreign_listener)
    with pytest.raises(errors.UsageError, match="cannot listen"):
        worker.ensure_free(HOST, foreign_listener)


def test_a_wildcard_listener_is_detected_for_loopback() -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        port = int(listener.getsockname()[1])
        assert not engine_process._free(HOST, port)
        with pytest.raises(errors.UsageError):
            worker.ensure_free(HOST, port)


@pytest.mark.slow
def test_engine_restarts_at_once_after_stopping_with_clients_connected(
    workspace: Workspace,
) -> None:
    """`mlops down` with clients connected, then `apply`: the engine starts again at once."""
    rt = LocalRuntime(workspace)
    port = workspace.config.serve.port
    rt.start(1)
    clients = [httpx.Client(base_url=f"http://{HOST}:{port}") for _ in range(5)]
    try:
        for client in clients:  # keep-alive connections the engine closes when it stops
            assert client.get("/v2/health/live").status_code == 200
        rt.stop()
        assert sockets_on(port, LEFT_OVER) > 0
        rt.start(1)
        assert rt.reachable()
    finally:
        for client in clients:
            client.close()
        rt.stop()
