"""`--replicas N` (or `--supervise`): worker processes sharing one port, supervised here.

The supervisor forwards SIGTERM/SIGINT to every worker, restarts a worker that dies on its
own, and gives up (exit 1) if workers keep dying right after starting.

The worker count changes live, with no restart and no lost request: write
`{"replicas": N}` to `STATE_DIR/replicas.json` and send SIGHUP. New workers (the next
indices) join the port once they serve every version the others serve (`worker --join`);
surplus workers (the highest indices) get SIGUSR1 and drain before they exit. The same live
scaling follows the load when the loaded versions ask for autoscaling (autoscale.py); the count
running is kept in `replicas.json` and every change, with its reason, in scale-events.jsonl,
where each restart of a dead worker is recorded too (`mlops status` shows them).
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from mlops.serving import autoscale, worker
from mlops.serving.config import ServeConfig, read_admin_token

log = logging.getLogger("mlops.serving")

_QUICK_DEATH = 2.0  # seconds; a worker dying sooner than this counts as a failed start
_MAX_QUICK_DEATHS = 3
REPLICAS_FILE = "replicas.json"
MAX_REPLICAS = 64
# A retiring worker drains for at most twice the keep-alive timeout plus uvicorn's 10 s
# graceful wait; past this it is killed.
RETIRE_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


def replicas_path(config: ServeConfig) -> Path:
    return config.state_dir / REPLICAS_FILE


def read_replicas(path: Path) -> int | None:
    """The count asked for in `path`; None (and a log line) if it is missing or invalid."""
    try:
        doc = json.loads(path.read_bytes()[:4096])
        wanted = doc["replicas"] if isinstance(doc, dict) else None
    except (OSError, ValueError, KeyError) as exc:
        log.error("ignoring SIGHUP: cannot read %s: %s", path, exc)
        return None
    if not isinstance(wanted, int) or isinstance(wanted, bool) or not 1 <= wanted <= MAX_REPLICAS:
        log.error("ignoring SIGHUP: %s must hold replicas 1..%d", path, MAX_REPLICAS)
        return None
    return wanted


@dataclass
class _Pool:
    config: ServeConfig
    workers: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    started: dict[int, float] = field(default_factory=dict)
    retiring: dict[subprocess.Popen[bytes], float] = field(default_factory=dict)  # -> deadline
    quick_deaths: int = 0
    stopping: bool = False
    rescale: bool = False
    # Told of each restart of a dead worker: (index, exit code, negative for a signal).
    on_restart: Callable[[int, int], None] | None = None

    def spawn(self, index: int, *, join: bool) -> None:
        command = [
            sys.executable, "-m", "mlops.serving.worker",
            self.config.to_json().decode(), str(index),
        ]  # fmt: skip
        if join:
            command.append("--join")
        self.workers[index], self.started[index] = subprocess.Popen(command), time.monotonic()

    def scale(self, wanted: int) -> None:
        count = len(self.workers)
        for index in range(count, wanted):
            log.warning("scaling up: starting worker %d", index)
            self.spawn(index, join=True)
        for index in range(count - 1, wanted - 1, -1):
            log.warning("scaling down: draining worker %d", index)
            proc = self.workers.pop(index)
            self.started.pop(index, None)
            if proc.poll() is None:
                proc.send_signal(signal.SIGUSR1)
                self.retiring[proc] = time.monotonic() + RETIRE_TIMEOUT_S

    def check(self) -> bool:
        """Reap retired workers, restart dead ones; False when workers keep dying at start."""
        for proc, deadline in list(self.retiring.items()):
            if proc.poll() is not None:
                del self.retiring[proc]
            elif time.monotonic() > deadline:
                proc.kill()
        for index, proc in list(self.workers.items()):
            code = proc.poll()
            if code is None or self.stopping:
                continue
            quick = time.monotonic() - self.started[index] < _QUICK_DEATH
            self.quick_deaths = self.quick_deaths + 1 if quick else 0
            if self.quick_deaths >= _MAX_QUICK_DEATHS:
                log.error("workers keep exiting at start-up (last code %s); stopping", code)
                return False
            log.warning("worker %d exited with code %s; restarting it", index, code)
            self.spawn(index, join=False)
            if self.on_restart is not None:
                self.on_restart(index, code)
        return True

    def signal_all(self, signum: int) -> None:
        for proc in [*self.workers.values(), *self.retiring]:
            if proc.poll() is None:
                proc.send_signal(signum)

    def wait_all(self, timeout: float) -> bool:
        """Wait for every worker to exit; False if one had to be killed."""
        clean = True
        deadline = time.monotonic() + timeout
        for proc in [*self.workers.values(), *self.retiring]:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                clean = False
        return clean


def run(config: ServeConfig) -> int:
    worker.ensure_free(config.host, config.port)
    if config.admin_port is not None:  # else each worker binds a port the kernel picks
        for index in range(config.replicas):
            worker.ensure_free(config.admin_host, config.admin_port_of(index))
    pool = _Pool(config)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        pool.stopping = True
        pool.signal_all(signal.SIGTERM)

    def on_hangup(signum: int, frame: FrameType | None) -> None:
        pool.rescale = True

    token = None if config.admin_token_file is None else read_admin_token(config.admin_token_file)
    scaler = autoscale.Controller(config.state_dir, config.repository, token)
    scaler.scaled(time.monotonic(), config.replicas, config.replicas, "start", "")
    pool.on_restart = lambda index, code: scaler.restarted(len(pool.workers), index, code)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hangup)
    for index in range(config.replicas):
        pool.spawn(index, join=False)
    healthy = True
    while not pool.stopping:
        time.sleep(0.2)
        if pool.rescale and not pool.stopping:
            pool.rescale = False
            wanted = read_replicas(replicas_path(config))
            if wanted is not None:
                before = len(pool.workers)
                pool.scale(wanted)
                scaler.scaled(time.monotonic(), before, wanted, "request", "replicas.json")
        if not pool.stopping and not pool.check():
            healthy = False
            on_signal(signal.SIGTERM, None)
        if not pool.stopping and not pool.rescale:
            pids = {index: proc.pid for index, proc in pool.workers.items()}
            change = scaler.tick(time.monotonic(), pids)
            if change is not None:
                before = len(pool.workers)
                pool.scale(change.count)
                scaler.scaled(time.monotonic(), before, change.count, "autoscale", change.reason)
    clean = pool.wait_all(STOP_TIMEOUT_S)
    return 0 if clean and healthy else 1
