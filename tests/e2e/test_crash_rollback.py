"""Crashes around a rollback (issue 9, findings 5 and 6), end to end on the real local target.

- The engine SIGKILLed during a hold: the rollback must reach the state a restarted engine
  starts from, so the aborted canary never comes back.
- `mlops apply` SIGKILLed in the middle of its rollback: the re-run finishes that rollback
  (the version ends rejected) instead of refusing with "traffic was changed outside".
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import NAME, E2EWorkspace, Load, RoutingWatch
from tests.e2e.test_safety import wait_for_hold

pytestmark = pytest.mark.slow


def engine_watch(ws: E2EWorkspace) -> RoutingWatch:
    """Every worker's routing table and repository index, polled fast: the highest weight and
    the states each version ever had, as the engine itself reported them."""
    return RoutingWatch(ws, period=0.02, index=True)


def _engine_pid(ws: E2EWorkspace) -> int:
    return int(json.loads((ws.root / ".mlops" / "engine.json").read_text())["pid"])


def _journal(ws: E2EWorkspace) -> list[dict[str, Any]]:
    directory = ws.root / ".mlops" / "journal"
    try:
        run_id = json.loads((directory / "current.json").read_text())["run_id"]
        lines = (directory / f"{run_id}.jsonl").read_text().splitlines()
    except (OSError, ValueError, KeyError):
        return []
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            break  # a line being written
    return events


def _unlock(ws: E2EWorkspace, plan: str) -> None:
    locked = ws.mlops("apply", plan, expect=1)
    assert "no longer running" in locked.output, locked.output
    match = re.search(r"mlops unlock (\w+)", locked.output)
    assert match is not None, locked.output
    ws.mlops("unlock", match.group(1))


def test_engine_killed_in_a_hold_never_brings_the_canary_back(ws: E2EWorkspace) -> None:
    ws.deploy_v1()
    ws.spec("1.1.0", steps=[(25, 120.0), (100, 0.0)], consecutive_errors=2)
    plan = ws.plan()
    apply = ws.start("apply", plan)
    wait_for_hold(ws, 25, apply)
    time.sleep(1.0)
    # The whole engine at once (supervisor and workers), as a machine crash or OOM kill would.
    os.killpg(_engine_pid(ws), signal.SIGKILL)
    output, _ = apply.communicate(timeout=180)
    assert apply.returncode == 3, output
    assert "metrics backend failed" in output
    # The rollback reached the state a starting engine reads, although no worker was there.
    desired = json.loads((ws.root / ".mlops" / "engine" / "desired.json").read_text())
    entry = desired["models"][NAME]
    assert entry["weights"] == {"1.0.0": 100} and entry["shadow"] is None
    assert entry["loaded"] == ["1.0.0"]
    assert "not running" in output  # says what it could not confirm, and why that is safe

    # The next engine start (here: applying the stable spec again) never serves 1.1.0.
    ws.spec("1.0.0")
    with engine_watch(ws) as watch:
        ws.mlops("apply", "--auto-approve", "specs/")
        time.sleep(0.5)
    assert watch.samples > 0
    assert watch.max_weight.get("1.1.0", 0) == 0, watch.max_weight
    assert "1.1.0" not in watch.states, watch.states
    model = ws.model()
    assert model["weights"] == {"1.0.0": 100} and model["stable"] == "1.0.0"
    assert model["canary"] is None


def test_apply_killed_mid_rollback_is_finished_by_the_rerun(ws: E2EWorkspace) -> None:
    ws.deploy_v1()
    ws.spec(
        "1.1.0",
        artifact=f"{NAME}-1.1.0-erroring.onnx",
        steps=[(25, 30.0), (100, 0.0)],
        gates="[{metric: error_rate, max: 0.01}]",
    )
    plan = ws.plan()
    with Load(ws, rate=100.0, poison_every=10):
        apply = ws.start("apply", plan)
        killed_after = _kill_after_rollback_traffic(ws, apply)
        assert killed_after, "the rollback's traffic step was never journaled"
        # Killed in the middle: traffic is back on 1.0.0, the rest of the rollback is not done.
        for url in ws.admin_urls():
            table = httpx.get(f"{url}/v2/routing", headers=ws.admin_headers()).json()
            table = table["models"][NAME]
            assert table["weights"].get("1.1.0", 0) == 0, table

        # Until it is finished, no new plan can undo it.
        planned = ws.mlops("plan", "specs/", expect=None)
        assert planned.code == 1 and "did not finish" in planned.output, planned.output

        _unlock(ws, plan)
        rerun = ws.mlops("apply", plan, expect=3)
    assert "error_rate" in rerun.output
    assert "outside this apply" not in rerun.output
    model = ws.model()
    assert model["stable"] == "1.0.0" and model["canary"] is None
    assert model["weights"] == {"1.0.0": 100}
    row = next(r for r in model["versions"] if r["semver"] == "1.1.0")
    assert row["status"] == "rejected" and "error_rate" in str(row["rejected_reason"])
    assert not row["loaded"]
    # The next plan cannot expose the rejected canary again.
    again = ws.mlops("plan", "specs/", expect=None)
    assert again.code != 0 and "rejected" in again.output, again.output


def _kill_after_rollback_traffic(ws: E2EWorkspace, apply: subprocess.Popen[str]) -> bool:
    """SIGKILL `apply` as soon as its journal shows the rollback began and moved traffic."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        events = _journal(ws)
        started = [i for i, e in enumerate(events) if e["event"] == "rolled_back"]
        if started and any(e["event"] == "weight" for e in events[started[0] :]):
            apply.send_signal(signal.SIGKILL)
            apply.wait(10)
            return True
        if apply.poll() is not None:
            return False
        time.sleep(0.002)
    apply.kill()
    return False
