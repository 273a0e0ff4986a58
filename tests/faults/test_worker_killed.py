"""One engine worker SIGKILLed in the middle of a canary's hold, under steady load (issue 15,
faults).

Documented outcome (docs/faults.md): the supervisor restarts the worker from the desired
state (the versions loaded and the last confirmed routing table, canary weight included);
`mlops status` shows the engine short of a replica until it is back, and the restart (which
worker, killed by which signal) from then on; the rollout goes on
(the gates may see errors from that worker only); the next plan has nothing to repair (or
repairs what is missing); only requests in flight on that worker may fail: at most the load
generator's concurrency.
"""

from __future__ import annotations

import json
import os
import signal
import time

import httpx
import pytest

from tests.e2e.conftest import NAME, E2EWorkspace, Load, RoutingWatch
from tests.e2e.test_safety import wait_for_hold

pytestmark = pytest.mark.slow

CONCURRENCY = 8  # tests.e2e.conftest.Load's loadgen workers: requests in flight at most


def worker_pid(ws: E2EWorkspace, index: int) -> int:
    record = json.loads((ws.root / ".mlops" / "engine" / f"worker-{index}.json").read_text())
    return int(record["pid"])


def test_worker_killed_mid_rollout(ws: E2EWorkspace) -> None:
    ws.deploy_v1()
    ws.spec(
        "1.1.0",
        steps=[(25, 8.0), (100, 0.0)],
        interval=0.5,
        min_requests=1,
        gates="[{metric: error_rate, max: 0.2}]",
        consecutive_errors=100,
    )
    plan = ws.plan()
    with RoutingWatch(ws) as watch, Load(ws, rate=100.0) as load:
        apply = ws.start("apply", plan)
        wait_for_hold(ws, 25, apply)
        victim = worker_pid(ws, 1)
        os.kill(victim, signal.SIGKILL)
        # Status shows the engine short of a worker until the supervisor's restart is back
        # (unless the restart beat the status command to it: then it shows the new worker).
        short = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            model = ws.model()
            if model["replicas_alive"] < model["replicas"]:
                short = True
            restarted = worker_pid(ws, 1) != victim
            if restarted and model["replicas_alive"] == model["replicas"]:
                break
            time.sleep(0.05)
        out, _ = apply.communicate(timeout=240)
        load.wait_answers(100)
    assert apply.returncode == 0, out
    assert worker_pid(ws, 1) != victim
    log = (ws.root / ".mlops" / "logs" / "engine.log").read_text()
    assert "worker 1 exited with code -9; restarting it" in log, log[-2000:]
    # Status shows the restart after the fact too, from the supervisor's event record.
    events = ws.status()["engine_scaling"]["events"]
    assert any(
        e["by"] == "restart" and e["reason"] == "worker 1 killed by SIGKILL; restarted"
        for e in events
    ), events
    assert "restart: worker 1 killed by SIGKILL; restarted" in ws.mlops("status").stdout
    print(f"status showed the engine short of a worker: {short}")
    assert load.summary is not None and load.summary.sent > 500
    assert load.summary.failed <= CONCURRENCY, load.summary.to_dict()
    assert watch.max_weight.get("1.1.0") == 100
    model = ws.model()
    assert model["weights"] == {"1.1.0": 100} and model["replicas_alive"] == 2
    # Every worker, the restarted one included, serves the plan's final table.
    urls = ws.admin_urls()
    assert len(urls) == 2, urls
    for url in urls:
        table = httpx.get(f"{url}/v2/routing", headers=ws.admin_headers(), timeout=5).json()
        assert table["models"][NAME]["weights"] == {"1.1.0": 100}, (url, table)
    ws.mlops("plan", "specs/", "--detailed-exitcode")
