"""The disk full while `apply` writes its journal or stages a model (issue 15, faults).

The full disk is a real one: a small tmpfs mounted (as root; CI runs as root) on the
directory in question, every free byte of it then taken, so writes fail with ENOSPC. Freeing
it and re-running the same plan converges. Documented outcomes in docs/faults.md.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.e2e.conftest import E2EWorkspace, Load, RoutingWatch
from tests.e2e.test_safety import wait_for_hold
from tests.faults.conftest import can_mount, free_disk, full_tmpfs

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not can_mount() and not os.environ.get("CI"), reason="needs root to mount a tmpfs"
    ),
]


def journal_lines(ws: E2EWorkspace) -> list[str]:
    directory = ws.root / ".mlops" / "journal"
    run_id = json.loads((directory / "current.json").read_text())["run_id"]
    return (directory / f"{run_id}.jsonl").read_text().splitlines()


def test_journal_disk_full_mid_rollout_stops_then_resumes(ws: E2EWorkspace) -> None:
    ws.deploy_v1()
    ws.spec("1.1.0", steps=[(25, 12.0), (100, 0.0)], interval=0.5, min_requests=1)
    plan = ws.plan()
    journal_dir = ws.root / ".mlops" / "journal"
    with full_tmpfs(journal_dir) as fill, RoutingWatch(ws) as watch, Load(ws, rate=50.0):
        apply = ws.start("apply", plan)
        wait_for_hold(ws, 25, apply)
        fill()  # the disk fills in the middle of the hold
        out, _ = apply.communicate(timeout=240)
        assert apply.returncode == 1, out
        assert "No space left on device" in out and "Traceback" not in out, out
        assert "journal" in out, out
        # Every line of the journal is whole (no torn line for the next append to follow).
        for line in journal_lines(ws):
            json.loads(line)
        assert not (ws.root / ".mlops" / "lock.json").exists()  # an error, not a crash
        free_disk(journal_dir)
        resumed = ws.mlops("apply", plan)
        assert "Resuming run" in resumed.output, resumed.output
    assert watch.max_weight.get("1.1.0") == 100
    model = ws.model()
    assert model["stable"] == "1.1.0" and model["weights"] == {"1.1.0": 100}


def test_staging_disk_full_fails_before_traffic(ws: E2EWorkspace) -> None:
    ws.deploy_v1()
    ws.spec("1.1.0", steps=[(25, 1.0), (100, 0.0)], interval=0.5, min_requests=1)
    plan = ws.plan()
    staged = ws.root / ".mlops" / "repository" / "fraud-scorer" / "1.1.0"
    with full_tmpfs(staged) as fill, RoutingWatch(ws) as watch:
        fill()
        failed = ws.mlops("apply", plan, expect=1)
        assert "No space left on device" in failed.output, failed.output
        assert "Traceback" not in failed.output, failed.output
        assert watch.max_weight.get("1.1.0", 0) == 0, watch.max_weight
        assert ws.model()["weights"] == {"1.0.0": 100}
        free_disk(staged)
        with Load(ws, rate=50.0):
            ws.mlops("apply", plan)
    model = ws.model()
    assert model["stable"] == "1.1.0" and model["weights"] == {"1.1.0": 100}
