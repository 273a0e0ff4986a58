"""The admin API (load, unload, routing) answers only on the admin address, with the token;
the inference port refuses it and nothing changes. Ready says false when a routed version is
missing. The local target's engine gets the workspace token without a command line showing it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from click.testing import CliRunner

from mlops import cli
from mlops.providers.engine import client as engine_client
from mlops.providers.engine.runtime import LocalRuntime
from mlops.serving.config import ServeConfig
from mlops.spec import models as spec
from mlops.workspace import Workspace, is_loopback, serve_warnings
from tests.runtime import support
from tests.serving import fixtures
from tests.serving.conftest import ADMIN_TOKEN, EngineThread, free_port

LOAD = {"parameters": {"version": "1.0.0"}}


def _state(admin: httpx.Client) -> tuple[object, object]:
    index = admin.post("/v2/repository/index", json={}).json()
    return admin.get("/v2/routing").json(), [(r["name"], r["version"], r["state"]) for r in index]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v2/repository/models/clf/unload", {}),
        ("POST", "/v2/repository/models/clf/unload", LOAD),
        ("POST", "/v2/repository/models/clf/load", LOAD),
        ("PUT", "/v2/routing/clf", {"weights": {"1.1.0": 100}}),
        ("GET", "/v2/routing", None),
        ("GET", "/v2/engine/load", None),
    ],
)
def test_inference_port_refuses_admin_calls_and_changes_nothing(
    client: httpx.Client,
    admin: httpx.Client,
    method: str,
    path: str,
    body: dict[str, object] | None,
) -> None:
    before = _state(admin)
    reply = client.request(method, path, json=body)
    assert reply.status_code == 403
    assert reply.headers["content-type"] == "application/json"
    assert "admin address" in reply.json()["error"]
    assert _state(admin) == before
    assert client.get("/v2/health/ready").status_code == 200


def test_worker_load_is_a_get_of_the_admin_address(admin: httpx.Client) -> None:
    report = admin.get("/v2/engine/load")
    assert report.status_code == 200 and isinstance(report.json(), dict)
    refused = admin.post("/v2/engine/load", json={})
    assert refused.status_code == 405 and "GET" in refused.json()["error"]


def test_read_only_endpoints_stay_on_the_front_door(client: httpx.Client) -> None:
    rows = client.post("/v2/repository/index", json={}).json()
    assert ("clf", "1.0.0", "READY") in [(r["name"], r["version"], r["state"]) for r in rows]
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong-token"},
        {"authorization": f"Basic {ADMIN_TOKEN}"},
        {"authorization": f"Bearer {ADMIN_TOKEN}x"},
        {"authorization": "Bearer"},
    ],
)
def test_admin_address_needs_the_token(
    engine: EngineThread, admin: httpx.Client, headers: dict[str, str]
) -> None:
    before = _state(admin)
    with httpx.Client(base_url=engine.admin_url, timeout=30, headers=headers) as anonymous:
        put = anonymous.put("/v2/routing/clf", json={"weights": {"1.1.0": 100}})
        assert put.status_code == 403 and "token" in put.json()["error"]
        assert anonymous.post("/v2/repository/models/clf/unload", json={}).status_code == 403
        assert anonymous.get("/v2/routing").status_code == 403
        # Health, metrics and the index need no token (probes and Prometheus read them).
        assert anonymous.get("/v2/health/ready").status_code == 200
        assert anonymous.get("/metrics").status_code == 200
        assert anonymous.post("/v2/repository/index", json={}).status_code == 200
    assert _state(admin) == before


def test_ready_is_false_while_a_routed_version_is_not_loaded(tmp_path: Path) -> None:
    repo, state = tmp_path / "repo", tmp_path / "state"
    fixtures.write_version(
        repo, "m", "1.0.0", fixtures.classifier_bytes(), fixtures.classifier_settings()
    )
    state.mkdir()
    # A table from a previous run sends traffic to 1.0.0; this worker starts with nothing.
    routing = state / "routing-0.json"
    table = {"generation": 3, "weights": {"1.0.0": 100}, "shadow": None}
    routing.write_text(
        json.dumps({"generation": 3, "generations": {"m": 3}, "tables": {"m": table}})
    )
    server = EngineThread(
        ServeConfig(repository=repo, state_dir=state, load_all=False), routing_file=routing
    )
    try:
        ready = httpx.get(f"{server.url}/v2/health/ready")
        assert ready.status_code == 503 and ready.json()["ready"] is False
        assert "m@1.0.0" in ready.json()["reason"]
        load = httpx.post(f"{server.admin_url}/v2/repository/models/m/load", json=LOAD, timeout=60)
        assert load.status_code == 200, load.text
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
    finally:
        server.stop()


def _serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    repo = tmp_path / "repo"
    fixtures.write_version(
        repo, "m", "1.0.0", fixtures.classifier_bytes(), fixtures.classifier_settings()
    )
    command = [sys.executable, "-c", "from mlops.cli import main; main()", "serve"]
    return subprocess.Popen(
        [*command, "--repository", str(repo), "--state-dir", str(tmp_path / "state"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _worker_state(tmp_path: Path, proc: subprocess.Popen[str]) -> dict[str, str]:
    path = tmp_path / "state" / "worker-0.json"
    deadline = time.monotonic() + 60
    while not path.is_file():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the engine did not start"
        time.sleep(0.05)
    doc: dict[str, str] = json.loads(path.read_text())
    return doc


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.terminate()
    out, err = proc.communicate(timeout=30)
    return out, err


def test_serve_on_all_addresses_warns_and_keeps_admin_on_loopback(tmp_path: Path) -> None:
    port, admin_port = free_port(), free_port()
    proc = _serve(
        tmp_path, "--host", "0.0.0.0", "--port", str(port), "--admin-port", str(admin_port)
    )
    try:
        state = _worker_state(tmp_path, proc)
        assert state["admin_url"] == f"http://127.0.0.1:{admin_port}"
        expected = {("0.0.0.0", port), ("127.0.0.1", admin_port)}
        listening: set[tuple[str, int]] = set()
        for _ in range(300):  # the worker may announce itself before both sockets listen
            supervisor = psutil.Process(proc.pid)
            listening = {
                (c.laddr.ip, c.laddr.port)
                for p in (supervisor, *supervisor.children(recursive=True))
                for c in p.net_connections(kind="tcp")
                if c.status == psutil.CONN_LISTEN
            }
            if expected <= listening:
                break
            time.sleep(0.1)
        assert ("0.0.0.0", port) in listening
        assert ("127.0.0.1", admin_port) in listening
        assert not any(p == admin_port and ip != "127.0.0.1" for ip, p in listening)
    finally:
        _, err = _stop(proc)
    warnings = [line for line in err.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1 and "--host 0.0.0.0 is not a loopback address" in warnings[0]


def test_serve_refuses_a_token_file_others_can_read(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("secret\n")
    token.chmod(0o644)
    proc = _serve(tmp_path, "--port", str(free_port()), env={"MLOPS_ADMIN_TOKEN_FILE": str(token)})
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.strip().splitlines() == [
        f"Error: admin token file {token} is accessible by other users (mode 644); chmod 600 it"
    ]


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return support.make_workspace(tmp_path / "ws")


@pytest.fixture
def runtime(workspace: Workspace) -> Iterator[LocalRuntime]:
    with support.running(workspace, replicas=1) as rt:
        yield rt


def test_local_engine_gets_the_workspace_token_off_the_command_line(
    workspace: Workspace, runtime: LocalRuntime
) -> None:
    token_file = workspace.admin_token_file
    assert token_file.stat().st_mode & 0o777 == 0o600
    token = workspace.admin_token()
    assert token and len(token) >= 32
    record = runtime.process.record()
    assert record is not None
    engine = psutil.Process(record.pid)
    for proc in [engine, *engine.children(recursive=True)]:
        assert token not in " ".join(proc.cmdline())
    (url,) = runtime.worker_admin_urls()
    assert url.startswith("http://127.0.0.1:")
    with engine_client.AdminClient(url) as anonymous:
        with pytest.raises(engine_client.EngineRejected) as refused:
            anonymous.unload("m", None)
        assert refused.value.status == 403
        assert anonymous.live()
    # The runtime itself sends the token: its reads and writes work.
    assert runtime.refresh() == {}
    with engine_client.AdminClient(url, token=token) as owner:
        assert owner.routing()["models"] == {}


def test_a_second_start_keeps_the_same_token(workspace: Workspace) -> None:
    first = workspace.ensure_admin_token().read_text()
    workspace.admin_token_file.chmod(0o644)
    assert workspace.ensure_admin_token().read_text() == first
    assert workspace.admin_token_file.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("example.com", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    config = spec.WorkspaceConfig(serve=spec.WorkspaceServe(host=host))
    assert bool(serve_warnings(config)) is not loopback


def test_validate_reports_a_non_loopback_serve_host(tmp_path: Path) -> None:
    (tmp_path / "mlops.yaml").write_text("serve:\n  host: 0.0.0.0\n")
    (tmp_path / "specs").mkdir()
    result = CliRunner().invoke(cli.cli, ["-C", str(tmp_path), "validate"])
    assert "Warning: serve.host 0.0.0.0 is not a loopback address" in result.output
    as_json = CliRunner().invoke(cli.cli, ["-C", str(tmp_path), "validate", "--format", "json"])
    document = json.loads(as_json.stdout)
    assert document["warnings"] == serve_warnings(
        spec.WorkspaceConfig(serve=spec.WorkspaceServe(host="0.0.0.0"))
    )
