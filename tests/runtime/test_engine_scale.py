"""The engine's worker count changes live, and its admin ports are the kernel's (issue 10).

Against real engine processes: a supervisor with workers sharing one port (SO_REUSEPORT).

- Admin ports: each worker binds its admin socket on port 0 unless `--admin-port` is given,
  and the controller reads each worker's admin address from STATE_DIR/worker-<i>.json. A
  port picked in advance can be taken by another program before the worker binds it ("cannot
  listen on 127.0.0.1:N: Address already in use"); port 0 cannot.
- Scaling: `LocalRuntime.scale(n)` adds workers that join the port only once they serve every
  version with the routing table (from the desired state), and drains surplus workers first;
  steady clients, with keep-alive connections and with a new connection per request, see no
  failed request.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from mlops import loadgen
from mlops.providers.engine import client as engine_client
from mlops.providers.engine.runtime import LocalRuntime
from mlops.state import models as state
from mlops.workspace import Workspace
from tests.runtime import support
from tests.serving import fixtures

pytestmark = pytest.mark.slow

SETTINGS = fixtures.classifier_settings()
HOST = "127.0.0.1"


def hold_port(stack: ExitStack, port: int) -> bool:
    """Listen on `port` (another program's socket) for the rest of the test, if it is free."""
    sock = stack.enter_context(socket.socket())
    try:
        sock.bind((HOST, port))
    except OSError:
        return False
    sock.listen()
    return True


def announced(state_dir: Path) -> dict[int, str]:
    found = {}
    for path in state_dir.glob("worker-*.json"):
        doc = json.loads(path.read_text())
        found[int(doc["index"])] = str(doc["admin_url"])
    return found


def test_admin_ports_are_the_kernels_choice_read_from_the_state_files(
    workspace: Workspace,
) -> None:
    port = workspace.config.serve.port
    with ExitStack() as stack:
        # The old default admin ports (port + 1000 + i) belong to another program.
        held = [p for p in (port + 1000, port + 1001) if p <= 65535 and hold_port(stack, p)]
        with support.running(workspace, replicas=2) as rt:
            record = json.loads((workspace.state_dir / "engine.json").read_text())
            assert record["admin_port"] is None  # no consecutive ports assumed
            urls = rt.worker_admin_urls()
            assert urls == [announced(rt.process.state_dir)[i] for i in range(2)]
            assert not {f"http://{HOST}:{p}" for p in held} & set(urls)
            assert rt.reachable() and len(rt.refresh()) == 0


def test_a_state_file_pointing_elsewhere_is_not_trusted(workspace: Workspace) -> None:
    with support.running(workspace, replicas=1) as rt:
        path = rt.process.state_dir / "worker-0.json"
        good = json.loads(path.read_text())
        # The admin token goes where the state file points: never off the admin host.
        path.write_text(json.dumps({**good, "admin_url": "http://198.51.100.7:80"}))
        assert rt.worker_admin_urls() == []
        # Nor to a process that is not a worker of this engine.
        path.write_text(json.dumps({**good, "pid": 1}))
        assert rt.worker_admin_urls() == []
        path.write_text(json.dumps(good))
        assert rt.worker_admin_urls() == [good["admin_url"]]


@contextmanager
def serve(
    root: Path, port: int, *extra: str, replicas: int = 2
) -> Iterator[subprocess.Popen[bytes]]:
    argv = [
        sys.executable, "-c", "from mlops.cli import main; main()", "serve",
        "--repository", str(root / "repo"), "--state-dir", str(root / "state"),
        "--port", str(port), "--replicas", str(replicas), *extra,
    ]  # fmt: skip
    (root / "repo").mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wait_announced(state: Path, count: int, proc: subprocess.Popen[bytes]) -> dict[int, str]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = announced(state) if state.is_dir() else {}
        if len(found) == count:
            return found
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        time.sleep(0.05)
    raise AssertionError(f"{count} workers did not announce themselves")


def test_serve_without_admin_port_starts_when_the_old_default_ports_are_taken(
    tmp_path: Path,
) -> None:
    port = support.free_port()
    with ExitStack() as stack:
        if not (hold_port(stack, port + 1000) and hold_port(stack, port + 1001)):
            pytest.skip("port + 1000.. is not free to hold")
        with serve(tmp_path, port) as proc:
            found = wait_announced(tmp_path / "state", 2, proc)
            for url in found.values():
                assert httpx.get(f"{url}/v2/health/live", timeout=5).status_code == 200


def test_an_explicit_admin_port_is_kept(tmp_path: Path) -> None:
    port = support.free_port()
    with socket.socket() as probe:  # two consecutive free ports, as the option implies
        probe.bind((HOST, 0))
        admin = int(probe.getsockname()[1])
    with serve(tmp_path, port, "--admin-port", str(admin)) as proc:
        found = wait_announced(tmp_path / "state", 2, proc)
        assert found == {0: f"http://{HOST}:{admin}", 1: f"http://{HOST}:{admin + 1}"}


class Churn:
    """A client that opens a new connection for every request (Connection: close)."""

    def __init__(self, url: str) -> None:
        self.path = f"{url}/v2/models/clf/infer"
        self.ok = 0
        self.failed: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        body = loadgen.body(fixtures.FEATURES, 1, False, 1)
        headers = {"content-type": "application/json", "connection": "close"}
        while not self.stop.is_set():
            try:
                reply = httpx.post(self.path, content=body, headers=headers, timeout=10)
            except httpx.HTTPError as exc:
                self.failed.append(repr(exc))
            else:
                if reply.status_code == 200:
                    self.ok += 1
                else:
                    self.failed.append(f"{reply.status_code} {reply.text[:80]}")
            self.stop.wait(0.01)


def test_scaling_up_and_down_under_load_loses_no_request(
    workspace: Workspace, tmp_path: Path
) -> None:
    with support.running(workspace, replicas=2) as rt:
        record = rt.process.record()
        assert record is not None
        rt.load("clf", "1.0.0", support.classifier_artifact(tmp_path, 0), SETTINGS)
        rt.load("clf", "1.1.0", support.classifier_artifact(tmp_path, 1), SETTINGS)
        rt.set_traffic("clf", {"1.0.0": 80, "1.1.0": 20}, None)
        summary, stop = loadgen.Summary(), threading.Event()
        steady = threading.Thread(
            target=loadgen.run,
            args=(rt.inference_url(), "clf"),
            kwargs={
                "rate": 150.0, "duration": 120.0, "features": fixtures.FEATURES,
                "workers": 12, "stop": stop, "summary": summary,
            },
        )  # fmt: skip
        churn = Churn(rt.inference_url())
        steady.start()
        churn.thread.start()
        try:
            for count in (3, 1, 2):
                before = summary.sent
                rt.scale(count)
                model = rt.refresh()["clf"]
                # Every worker serves both versions with the same table, the same process.
                assert model.replicas == model.replicas_alive == count
                assert model.loaded == {"1.0.0": "ready", "1.1.0": "ready"}
                assert model.weights == {"1.0.0": 80, "1.1.0": 20}
                assert len(set(rt.worker_admin_urls())) == count
                now = rt.process.record()
                assert now is not None and now.pid == record.pid and now.replicas == count
                while summary.sent < before + 100:  # traffic flowed through the change
                    time.sleep(0.05)
        finally:
            stop.set()
            churn.stop.set()
            steady.join(30)
            churn.thread.join(30)
        assert summary.failed == 0, summary.to_dict()
        assert churn.failed == [] and churn.ok > 10
        assert summary.sent > 300


def test_ensure_running_never_restarts_a_running_engine(runtime: LocalRuntime) -> None:
    record = runtime.process.record()
    runtime.ensure_running(3)  # another count: left as it is (that is `scale`, planned)
    assert runtime.process.record() == record
    assert len(runtime.worker_admin_urls()) == 2


def listeners(port: int) -> int:
    """Sockets in LISTEN on `port` (/proc/net/tcp state 0A): workers taking connections."""
    count = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
                count += 1
    return count


def test_a_new_worker_takes_no_connection_before_it_serves(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    # A version that takes a while to load (a wide model, many warm-up runs): the new worker
    # must not listen on the data port until it is loaded and routed like the others.
    slow = tmp_path / "slow.onnx"
    slow.write_bytes(fixtures.slow_bytes())
    runtime.load("slow", "1.0.0", slow, {**fixtures.slow_settings(), "warmup": {"requests": 300}})
    runtime.set_traffic("slow", {"1.0.0": 100}, None)
    port = runtime.workspace.config.serve.port
    state = runtime.process.state_dir / "worker-2.json"
    scaling = threading.Thread(target=runtime.scale, args=(3,))
    scaling.start()
    seen_loading = 0
    while scaling.is_alive():
        before = json.loads(state.read_text()) if state.exists() else None
        count = listeners(port)
        after = json.loads(state.read_text()) if state.exists() else None
        if before and after and before["serving"] is False and after["serving"] is False:
            seen_loading += 1
            assert count == 2, "the loading worker listens on the data port"
        time.sleep(0.005)
    scaling.join()
    assert seen_loading > 0  # the window was observed
    assert listeners(port) == 3
    for url in runtime.worker_admin_urls():
        with engine_client.AdminClient(url, token=runtime.process.admin_token()) as admin:
            assert admin.routing()["models"]["slow"]["weights"] == {"1.0.0": 100}
            assert ("slow", "1.0.0", "READY") in {
                (r["name"], r["version"], r["state"]) for r in admin.index()
            }


def test_reading_the_engine_writes_nothing(runtime: LocalRuntime, tmp_path: Path) -> None:
    runtime.load("clf", "1.0.0", support.classifier_artifact(tmp_path, 0), SETTINGS)
    runtime.desired_file.unlink()  # an engine started before the controller kept one
    assert runtime.engine() == state.EngineState(replicas=2, models=["clf"])
    assert not runtime.desired_file.exists()  # plan reads it: no side effect
    assert LocalRuntime(runtime.workspace).engine().models == ["clf"]
