"""The local engine's process: start `mlops serve` detached, find it again, scale it, stop it.

What was started is recorded in `.mlops/engine.json` (pid, its start time, the data port, the
worker count), so that a later `mlops` run (or `mlops down`) finds the same process and never
signals a recycled pid. Each worker binds its admin socket on a port the kernel picks (no port
is chosen in advance, where another program could take it first) and announces it in
`.mlops/engine/worker-<i>.json`; that file, not the record, says where worker i answers.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mlops import errors, fsio
from mlops.providers.engine import client as engine_client
from mlops.workspace import Workspace

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
# New workers load every version before they join; surplus ones drain (up to twice the
# keep-alive timeout, then uvicorn's graceful wait) before they exit.
SCALE_TIMEOUT_S = 90.0
REPLICAS_FILE = "replicas.json"  # what the supervisor reads on SIGHUP (serving/supervisor.py)
MAX_STATE_BYTES = 4096
MAX_EXTRA_INDICES = 64  # how far past the count to look for workers still draining
# The engine's admin ports listen here whatever serve.host is (see docs/security.md).
ADMIN_HOST = "127.0.0.1"


@dataclass(frozen=True)
class WorkerState:
    """What worker `index` announced in STATE_DIR/worker-<index>.json."""

    index: int
    pid: int
    admin_url: str
    serving: bool  # listening on the data port (it joins only once it can serve)


@dataclass(frozen=True)
class EngineRecord:
    pid: int
    create_time: float
    host: str
    port: int
    # Given explicitly (worker i on admin_port + i): records of engines started that way.
    # None: every worker's admin port was chosen by the kernel and is read from its state file.
    admin_port: int | None
    replicas: int
    admin_host: str = ADMIN_HOST
    state_dir: str = ""  # where the workers announce themselves
    supervised: bool = False  # the worker count can change live (`mlops serve --supervise`)

    def workers(self) -> list[WorkerState | None]:
        """Worker i's announcement, for i < replicas (None: it has not announced itself, or
        not as a worker of this engine: it is starting, restarting or gone)."""
        if not self.state_dir:
            if self.admin_port is None:
                return [None] * self.replicas
            return [
                WorkerState(i, self.pid, f"http://{self.admin_host}:{self.admin_port + i}", True)
                for i in range(self.replicas)
            ]
        return [self.worker(i) for i in range(self.replicas)]

    def worker(self, index: int) -> WorkerState | None:
        announced = read_worker(Path(self.state_dir), index, self.admin_host)
        if announced is None or not _child_of(announced.pid, self.pid):
            return None  # a stale file of an earlier engine, or of a worker that died
        return announced

    def admin_urls(self) -> list[str]:
        """The admin address of every worker that announced itself."""
        return [w.admin_url for w in self.workers() if w is not None]


def read_worker(state_dir: Path, index: int, admin_host: str) -> WorkerState | None:
    """STATE_DIR/worker-<index>.json, checked: its admin URL must be on `admin_host` (the
    admin token is sent there), the rest well formed. None when absent or invalid."""
    try:
        with (state_dir / f"worker-{index}.json").open("rb") as handle:
            doc = json.loads(handle.read(MAX_STATE_BYTES))
        url, pid = doc["admin_url"], doc["pid"]
        parts = urlsplit(url)
        port = parts.port
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if (
        parts.scheme != "http"
        or parts.hostname != admin_host
        or not port
        or parts.path not in ("", "/")
        or not isinstance(pid, int)
    ):
        return None
    return WorkerState(index, pid, f"http://{admin_host}:{port}", doc.get("serving", True) is True)


def _running_replicas(record: EngineRecord) -> int | None:
    if not record.supervised or not record.state_dir:
        return None
    try:
        with (Path(record.state_dir) / REPLICAS_FILE).open("rb") as handle:
            count = json.loads(handle.read(MAX_STATE_BYTES)).get("replicas")
    except (OSError, ValueError, AttributeError):
        return None
    valid = isinstance(count, int) and not isinstance(count, bool) and 1 <= count <= 64
    return count if valid else None


def _child_of(pid: int, parent: int) -> bool:
    """`pid` is the engine process itself (one unsupervised worker) or one of its workers."""
    import psutil

    if pid == parent:
        return True
    try:
        return psutil.Process(pid).ppid() == parent
    except psutil.Error:
        return False


class EngineProcess:
    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        state = workspace.state_dir
        self.record_file = state / "engine.json"
        self.log_file = state / "logs" / "engine.log"
        self.state_dir = state / "engine"
        self.repository = state / "repository"

    def admin_token(self) -> str | None:
        """The token the engine's admin calls need (the workspace's), if there is one."""
        return self.workspace.admin_token()

    def record(self) -> EngineRecord | None:
        """The recorded engine, if that very process is still running."""
        try:
            record = EngineRecord(**json.loads(self.record_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        if not same_process(record.pid, record.create_time):
            return None
        # The supervisor keeps the count it runs in replicas.json (it autoscales, too).
        running = _running_replicas(record)
        return record if running is None else replace(record, replicas=running)

    def start(self, replicas: int) -> EngineRecord:
        """Start the engine detached and wait until every worker answers on its admin address."""
        import psutil

        serve = self.workspace.config.serve
        if not _free(serve.host, serve.port):
            raise errors.UsageError(
                f"port {serve.port} on {serve.host} is in use by another program; "
                "set serve.port in mlops.yaml"
            )
        self.workspace.ensure_state_dir()
        token_file = self.workspace.ensure_admin_token()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.repository.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.state_dir.glob("worker-*.json"):
            stale.unlink()
        (self.state_dir / REPLICAS_FILE).unlink(missing_ok=True)
        argv = [
            # Not `-m mlops.cli`: as __main__ the CLI module would be loaded twice.
            sys.executable, "-c", "from mlops.cli import main; main()", "serve",
            "--repository", str(self.repository),
            "--host", serve.host, "--port", str(serve.port),
            "--replicas", str(replicas), "--supervise",
            # No --admin-port: each worker's admin port is the kernel's choice (no race with
            # other programs for a port picked in advance), announced in its state file.
            "--admin-host", ADMIN_HOST,
            "--state-dir", str(self.state_dir),
            # Versions load only on request: a restarted worker must not bring back a staged
            # canary with no weight table (it would take all traffic).
            "--no-load-all",
        ]  # fmt: skip
        # The token file's path travels in the environment; the token itself is never on a
        # command line (`ps` shows those to every user).
        env = {**os.environ, "MLOPS_ADMIN_TOKEN_FILE": str(token_file)}
        with self.log_file.open("ab") as log:
            # Own session: the engine outlives this command and its process group is ours to stop.
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.workspace.root,
                env=env,
            )
        record = EngineRecord(
            proc.pid, psutil.Process(proc.pid).create_time(), serve.host, serve.port,
            None, replicas, ADMIN_HOST, str(self.state_dir), supervised=True,
        )  # fmt: skip
        self._write_record(record)
        self._wait_live(proc, record)
        return record

    def _write_record(self, record: EngineRecord) -> None:
        fsio.atomic_write(self.record_file, json.dumps(asdict(record)))

    def _wait_live(self, proc: subprocess.Popen[bytes], record: EngineRecord) -> None:
        """Until every worker announced its admin address and answers there."""
        deadline = time.monotonic() + START_TIMEOUT_S
        pending = list(range(record.replicas))
        while pending:
            if proc.poll() is not None:
                raise errors.PermanentError(
                    f"the engine exited with code {proc.returncode} while starting: "
                    f"{self.log_tail()} (log: {self.log_file})"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise errors.TransientError(
                    f"the engine did not become live within {START_TIMEOUT_S:.0f}s "
                    f"(worker {pending[0]} did not announce itself; log: {self.log_file})"
                )
            announced = record.worker(pending[0])
            if announced is not None:
                with engine_client.AdminClient(announced.admin_url) as admin:
                    if admin.live():
                        pending.pop(0)
                        continue
            time.sleep(0.05)

    def scale(self, replicas: int) -> EngineRecord:
        """Change the number of workers of the running engine live: new workers join the port
        once they serve what the others serve, surplus ones drain first (serving/supervisor.py).
        Returns the updated record once workers 0..replicas-1 serve and the others are gone."""
        import psutil

        record = self.record()
        if record is None:
            raise errors.TransientError("the local engine is not running")
        if not record.supervised:
            raise errors.PermanentError(
                "the running engine cannot change its worker count live (started by an older "
                "mlops, or by hand without --supervise): stop it with `mlops down`, then apply"
            )
        state_dir = Path(record.state_dir)
        # Workers beyond the new count, by any index still announced (an earlier scale-down
        # may not have finished).
        leaving = [
            w.pid
            for index in range(replicas, max(record.replicas, replicas) + MAX_EXTRA_INDICES)
            if (w := read_worker(state_dir, index, record.admin_host)) is not None
            and _child_of(w.pid, record.pid)
        ]
        fsio.atomic_write(state_dir / REPLICAS_FILE, json.dumps({"replicas": replicas}))
        os.kill(record.pid, signal.SIGHUP)
        wanted = replace(record, replicas=replicas)
        deadline = time.monotonic() + SCALE_TIMEOUT_S
        while True:
            workers = wanted.workers()
            waiting = [i for i, w in enumerate(workers) if w is None or not w.serving]
            staying = [p for p in leaving if psutil.pid_exists(p) and _child_of(p, record.pid)]
            if not waiting and not staying:
                break
            if not same_process(record.pid, record.create_time):
                raise errors.PermanentError(
                    f"the engine exited while scaling: {self.log_tail()} (log: {self.log_file})"
                )
            if time.monotonic() > deadline:
                what = (
                    f"worker {waiting[0]} does not serve yet (it joins once every version is "
                    "loaded and routed as on the others)"
                    if waiting
                    else f"{len(staying)} surplus worker(s) still draining"
                )
                raise errors.TransientError(
                    f"scaling the engine to {replicas} workers did not finish within "
                    f"{SCALE_TIMEOUT_S:.0f}s: {what} (log: {self.log_file})"
                )
            time.sleep(0.1)
        self._write_record(wanted)
        return wanted

    def stop(self) -> bool:
        """Stop the recorded engine and its workers; False when nothing was running."""
        import psutil

        record = self.record()
        self.record_file.unlink(missing_ok=True)
        if record is None:
            return False
        try:
            parent = psutil.Process(record.pid)
            procs = [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return False
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGTERM)
        alive = wait_gone(procs, STOP_TIMEOUT_S)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        wait_gone(alive, 5.0)
        for stale in self.state_dir.glob("worker-*.json"):
            stale.unlink()
        return True

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text[-lines:])


def wait_gone(procs: list[Any], timeout: float) -> list[Any]:
    """Wait until every process exited; those still running at the deadline. A zombie counts
    as gone: when another process started the engine, only that parent can reap it."""
    import psutil

    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                if proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
                else:
                    with contextlib.suppress(psutil.Error):
                        proc.wait(timeout=0)  # reaps it when it is our own child
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def same_process(pid: int, create_time: float) -> bool:
    import psutil

    try:
        proc = psutil.Process(pid)
        started: float = proc.create_time()
        return abs(started - create_time) < 0.01 and proc.status() != "zombie"
    except psutil.Error:
        return False


def _free(host: str, port: int) -> bool:
    """True when the engine could listen on host:port.

    Probes the way the engine binds (SO_REUSEADDR), so the TIME_WAIT sockets a stopped engine
    leaves for a minute are no obstacle while any listener is, including a SO_REUSEPORT one
    (the probe does not set SO_REUSEPORT, so it never joins another program's port).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
