"""`mlops down` through the real CLI: stops what the workspace started, idempotently."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from mlops.providers.metrics import prometheus
from mlops.workspace import open_workspace
from tests.runtime import support

pytestmark = pytest.mark.slow


def mlops(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", "from mlops.cli import main; main()", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_down_stops_engine_and_prometheus(tmp_path: Path) -> None:
    (tmp_path / "mlops.yaml").write_text(f"serve: {{port: {support.free_port()}}}\n")
    ws = open_workspace(tmp_path)
    with support.running(ws, replicas=2) as rt:
        record = rt.process.record()
        assert record is not None
        pids = [record.pid, *(c.pid for c in psutil.Process(record.pid).children(recursive=True))]
        assert len(pids) == 3  # supervisor + 2 workers
        server = prometheus.PrometheusServer(ws)
        if prometheus.installed():
            server.start()
        done = mlops("-C", str(tmp_path), "down", "--format", "json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"engine": True, "prometheus": prometheus.installed()}
        assert not any(
            psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids
        )
        assert not rt.reachable() and not server.running()
    again = mlops("-C", str(tmp_path), "down")
    assert again.returncode == 0
    assert again.stdout.splitlines() == ["engine: not running", "prometheus: not running"]
    assert "Example" in mlops("down", "--help").stdout
