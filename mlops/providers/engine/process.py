"""The local engine's process: start `mlops serve` detached, find it again, stop it.

What was started is recorded in `.mlops/engine.json` (pid, its start time, ports), so that a
later `mlops` run (or `mlops down`) finds the same process and never signals a recycled pid.
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
from dataclasses import asdict, dataclass
from typing import Any

from mlops import errors, fsio
from mlops.providers.engine import client as engine_client
from mlops.workspace import Workspace

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
# The engine's admin ports listen here whatever serve.host is (see docs/security.md).
ADMIN_HOST = "127.0.0.1"


@dataclass(frozen=True)
class EngineRecord:
    pid: int
    create_time: float
    host: str
    port: int
    admin_port: int
    replicas: int
    admin_host: str = ADMIN_HOST

    def admin_urls(self) -> list[str]:
        return [f"http://{self.admin_host}:{self.admin_port + i}" for i in range(self.replicas)]


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
        return record if same_process(record.pid, record.create_time) else None

    def start(self, replicas: int) -> EngineRecord:
        """Start the engine detached and wait until every worker answers on its admin address."""
        import psutil

        serve = self.workspace.config.serve
        if not _free(serve.host, serve.port):
            raise errors.UsageError(
                f"port {serve.port} on {serve.host} is in use by another program; "
                "set serve.port in mlops.yaml"
            )
        admin_port = _admin_base(ADMIN_HOST, serve.port, replicas)
        self.workspace.ensure_state_dir()
        token_file = self.workspace.ensure_admin_token()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.repository.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.state_dir.glob("worker-*.json"):
            stale.unlink()
        argv = [
            # Not `-m mlops.cli`: as __main__ the CLI module would be loaded twice.
            sys.executable, "-c", "from mlops.cli import main; main()", "serve",
            "--repository", str(self.repository),
            "--host", serve.host, "--port", str(serve.port),
            "--replicas", str(replicas),
            "--admin-port", str(admin_port), "--admin-host", ADMIN_HOST,
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
            admin_port, replicas, ADMIN_HOST,
        )  # fmt: skip
        fsio.atomic_write(self.record_file, json.dumps(asdict(record)))
        self._wait_live(proc, record)
        return record

    def _wait_live(self, proc: subprocess.Popen[bytes], record: EngineRecord) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        pending = record.admin_urls()
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
                    f"(log: {self.log_file})"
                )
            with engine_client.AdminClient(pending[0]) as admin:
                if admin.live():
                    pending.pop(0)
                    continue
            time.sleep(0.1)

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


def _admin_base(host: str, port: int, replicas: int) -> int:
    """The contract's default (port + 1000) when those ports are free, else a free range."""
    candidates = [port + 1000]
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            candidates.append(sock.getsockname()[1])
    for base in candidates:
        ports = range(base, base + replicas)
        if ports[-1] <= 65535 and port not in ports and all(_free(host, p) for p in ports):
            return base
    raise errors.TransientError(f"no {replicas} free consecutive admin ports on {host}")
