"""The MLflow store locked or unreachable (issue 15, faults).

- Locked: another connection holds sqlite's write lock (`BEGIN IMMEDIATE`) on the workspace's
  `mlflow.db` while `apply` must register a new version. Reads (plan, status) still work.
- Unreachable: `registry_uri` names an MLflow server that is down (a loopback port nothing
  listens on).
Documented outcomes in docs/faults.md.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess

import pytest

from tests.e2e.conftest import NAME, E2EWorkspace

pytestmark = pytest.mark.slow


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released: connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_locked_store_fails_cleanly_and_the_rerun_registers_once(ws: E2EWorkspace) -> None:
    ws.deploy_v1()
    ws.spec("1.1.0", steps=[(100, 0.0)])
    holder = sqlite3.connect(ws.root / ".mlops" / "mlflow.db", isolation_level=None, timeout=0)
    holder.execute("BEGIN IMMEDIATE")  # the write lock, held by another connection
    try:
        planned = ws.mlops("plan", "specs/", "-o", "plans/next.json")  # reads are not blocked
        assert "1.1.0" in planned.output
        locked = ws.mlops("apply", "plans/next.json", expect=None)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert locked.code == 1, locked.output
    assert "locked" in locked.output and "Traceback" not in locked.output, locked.output
    assert len(locked.output.strip().splitlines()[-1]) < 600
    model = ws.model()
    assert model["weights"] == {"1.0.0": 100} and model["stable"] == "1.0.0"
    # Lock released: the same plan resumes and registers 1.1.0 exactly once.
    ws.mlops("apply", "plans/next.json")
    with sqlite3.connect(ws.root / ".mlops" / "mlflow.db") as db:
        rows = db.execute(
            "SELECT value FROM model_version_tags WHERE name = ? AND key = 'mlops.semver'",
            (NAME,),
        ).fetchall()
    semvers = sorted(str(r[0]) for r in rows)
    assert semvers == ["1.0.0", "1.1.0"], semvers
    assert ws.model()["weights"] == {"1.1.0": 100}


def test_unreachable_registry_server_is_a_one_line_error(ws: E2EWorkspace) -> None:
    ws.deploy_v1()
    port = closed_port()
    config = ws.root / "mlops.yaml"
    config.write_text(config.read_text() + f"registry_uri: http://127.0.0.1:{port}\n")
    ws.spec("1.1.0")
    for args in (("plan", "specs/"), ("status",), ("apply", "--auto-approve", "specs/")):
        try:
            result = ws.mlops(*args, expect=None, timeout=300)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"mlops {' '.join(args)} hung on a registry that is down") from exc
        assert result.code != 0, result.output
        assert "Traceback" not in result.output, result.output
        assert f"127.0.0.1:{port}" in result.output, result.output
        assert len(result.output.strip().splitlines()) <= 3, result.output
    # Nothing changed on the engine.
    config.write_text(config.read_text().replace(f"registry_uri: http://127.0.0.1:{port}\n", ""))
    model = ws.model()
    assert model["weights"] == {"1.0.0": 100}
