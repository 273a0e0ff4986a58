"""`--replicas N`: N worker processes sharing one port, supervised by this process.

The supervisor forwards SIGTERM/SIGINT to every worker, restarts a worker that dies on its
own, and gives up (exit 1) if workers keep dying right after starting.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from types import FrameType

from mlops.serving import worker
from mlops.serving.config import ServeConfig

log = logging.getLogger("mlops.serving")

_QUICK_DEATH = 2.0  # seconds; a worker dying sooner than this counts as a failed start
_MAX_QUICK_DEATHS = 3


def run(config: ServeConfig) -> int:
    worker.ensure_free(config.host, config.port)
    for index in range(config.replicas):
        worker.ensure_free(config.admin_host, config.first_admin_port + index)
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for proc in workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    workers: dict[int, subprocess.Popen[bytes]] = {}
    started: dict[int, float] = {}
    quick_deaths = 0
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for index in range(config.replicas):
        workers[index], started[index] = _spawn(config, index), time.monotonic()
    while not stopping:
        time.sleep(0.2)
        for index, proc in list(workers.items()):
            code = proc.poll()
            if code is None or stopping:
                continue
            quick_deaths = (
                quick_deaths + 1 if time.monotonic() - started[index] < _QUICK_DEATH else 0
            )
            if quick_deaths >= _MAX_QUICK_DEATHS:
                log.error("workers keep exiting at start-up (last code %s); stopping", code)
                on_signal(signal.SIGTERM, None)
                break
            log.warning("worker %d exited with code %s; restarting it", index, code)
            workers[index], started[index] = _spawn(config, index), time.monotonic()
    failed = False
    deadline = time.monotonic() + 15
    for proc in workers.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            failed = True
    return 1 if failed or quick_deaths >= _MAX_QUICK_DEATHS else 0


def _spawn(config: ServeConfig, index: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "mlops.serving.worker", config.to_json().decode(), str(index)]
    return subprocess.Popen(command)
