"""Crash safety end to end: SIGKILL and resume, the workspace lock, stale plans, and a
forced rollback under steady load."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time

import httpx
import pytest

from tests.e2e.conftest import NAME, E2EWorkspace, Load, RoutingWatch

pytestmark = pytest.mark.slow


def output(process: subprocess.Popen[str]) -> str:
    """What an exited process printed (E2EWorkspace.start pipes its stdout)."""
    return process.stdout.read() if process.stdout is not None else ""


def wait_for_hold(
    ws: E2EWorkspace, weight: int, process: subprocess.Popen[str], timeout: float = 180
) -> None:
    record = ws.root / ".mlops" / "rollouts" / f"{NAME}.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if record.is_file():
            step = json.loads(record.read_text()).get("step") or {}
            if step.get("weight") == weight:
                return
        assert process.poll() is None, output(process)
        time.sleep(0.1)
    raise AssertionError(f"no hold at {weight}% within {timeout}s")


def wait_for_gate_round(
    ws: E2EWorkspace, process: subprocess.Popen[str], timeout: float = 120
) -> None:
    """Until the hold in progress has recorded a round of gate measurements."""
    record = ws.root / ".mlops" / "rollouts" / f"{NAME}.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = json.loads(record.read_text()) if record.is_file() else {}
        # Rounds of this run (the record keeps some of earlier runs for context).
        if any(g.get("run_id") == current.get("run_id") for g in current.get("gates") or []):
            return
        assert process.poll() is None, output(process)
        time.sleep(0.1)
    raise AssertionError(f"no gate round within {timeout}s")


def test_sigkill_mid_hold_then_rerun_converges(ws: E2EWorkspace) -> None:
    ws.deploy_v1()
    ws.spec("1.1.0", steps=[(25, 8.0), (50, 2.0), (100, 0.0)])
    plan = ws.plan()
    with RoutingWatch(ws) as watch, Load(ws, rate=100.0):
        apply = ws.start("apply", plan)
        wait_for_hold(ws, 25, apply)
        wait_for_gate_round(ws, apply)  # killed mid-hold, after it measured (no fixed sleep)
        apply.send_signal(signal.SIGKILL)
        apply.wait(10)
        assert watch.max_weight.get("1.1.0", 0) == 25

        locked = ws.mlops("apply", plan, expect=1)
        assert "no longer running" in locked.output
        found = re.search(r"mlops unlock (\w+)", locked.output)
        assert found is not None, locked.output
        lock_id = found.group(1)
        ws.mlops("unlock", lock_id)
        resumed = ws.mlops("apply", plan)
        assert "Resuming run" in resumed.output
    model = ws.model()
    assert model["stable"] == "1.1.0" and model["weights"] == {"1.1.0": 100}
    # The weights the engine ever had for the canary follow the plan: 25 -> 50 -> 100.
    assert watch.max_weight["1.1.0"] == 100
    registry = json.loads(ws.mlops("registry", "show", NAME, "--format", "json").stdout)
    assert json.dumps(registry).count('"1.1.0"') >= 1
    versions = [v for v in _versions(registry) if v == "1.1.0"]
    assert versions == ["1.1.0"]  # registered once, not twice


def _versions(document: object) -> list[str]:
    found: list[str] = []
    if isinstance(document, dict):
        if "semver" in document and isinstance(document["semver"], str):
            found.append(document["semver"])
        for value in document.values():
            found.extend(_versions(value))
    elif isinstance(document, list):
        for value in document:
            found.extend(_versions(value))
    return found


def test_second_apply_fails_fast_naming_the_holder(ws: E2EWorkspace) -> None:
    ws.deploy_v1()
    ws.spec("1.1.0", steps=[(25, 20.0), (100, 0.0)])
    plan = ws.plan()
    first = ws.start("apply", plan)
    lock = ws.root / ".mlops" / "lock.json"
    deadline = time.monotonic() + 120
    while not lock.is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    holder = json.loads(lock.read_text())
    started = time.monotonic()
    second = ws.mlops("apply", plan, expect=1)
    assert f"pid {first.pid}" in second.output and holder["id"] in second.output
    assert "held by" in second.output
    assert time.monotonic() - started < 60  # fails at once, not after the first apply
    first.send_signal(signal.SIGINT)
    first.wait(60)


def test_stale_plan_is_refused_and_nothing_changes(ws: E2EWorkspace) -> None:
    ws.deploy_v1()
    ws.spec("1.1.0")
    plan = ws.plan()
    before = ws.model()
    # Someone re-applies the routing table by hand: a new generation, same weights.
    for url in ws.admin_urls():
        reply = httpx.put(
            f"{url}/v2/routing/{NAME}",
            json={"weights": {"1.0.0": 100}, "shadow": None, "generation": 1000},
            headers=ws.admin_headers(),
        )
        assert reply.status_code == 200, reply.text
    runs_before = sorted((ws.root / ".mlops" / "journal").glob("*.jsonl"))
    result = ws.mlops("apply", plan, expect=1)
    assert "plan is stale" in result.output
    after = ws.model()
    assert [r["semver"] for r in after["versions"]] == [r["semver"] for r in before["versions"]]
    assert after["weights"] == {"1.0.0": 100} and after["stable"] == "1.0.0"
    assert sorted((ws.root / ".mlops" / "journal").glob("*.jsonl")) == runs_before


def test_forced_rollback_under_load_fails_no_request(ws: E2EWorkspace) -> None:
    ws.deploy_v1()
    # min_requests out of reach: the hold ends inconclusive and the rollout pauses at 25%.
    ws.spec("1.1.0", steps=[(25, 2.0), (100, 0.0)], min_requests=10**6)
    with Load(ws, rate=200.0) as load:
        ws.mlops("apply", "--auto-approve", "specs/", expect=4)
        ws.mlops("rollback", NAME)
        load.wait_answers(200)  # traffic after the rollback counts too
    assert load.summary is not None and load.summary.sent > 300
    assert load.summary.failed == 0, load.summary.to_dict()
    model = ws.model()
    assert model["weights"] == {"1.0.0": 100} and model["canary"] is None
    assert model["rollout"]["status"] == "rolled_back"
