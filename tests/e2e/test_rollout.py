"""Rollouts end to end through the CLI on the real local target: promotion, automatic
rollbacks (p99, error rate, conformance), pause and promote, metrics outage."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import pytest

from tests.e2e.conftest import NAME, E2EWorkspace, Load, RoutingWatch

pytestmark = pytest.mark.slow


def version_row(model: dict[str, Any], semver: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = [r for r in model["versions"] if r["semver"] == semver]
    assert rows, f"{semver} not in {model['versions']}"
    return rows[0]


def test_happy_canary_reaches_100_with_zero_failed_requests(ws: E2EWorkspace) -> None:
    ws.deploy_v1()
    ws.spec("1.1.0", steps=[(25, 3.0), (50, 3.0), (100, 0.0)])
    plan = ws.plan()
    with RoutingWatch(ws) as watch, Load(ws, rate=200.0) as load:
        ws.mlops("apply", plan)
    model = ws.model()
    assert model["stable"] == "1.1.0" and model["canary"] is None
    assert model["weights"] == {"1.1.0": 100}
    assert version_row(model, "1.1.0")["status"] in ("registered", "conformant")
    rollout = model["rollout"]
    assert rollout["status"] == "completed"
    decisions = [r["decision"] for r in rollout["gates"]]
    assert decisions.count("promote") == 2  # one passing end-of-hold per checkpoint
    assert watch.max_weight.get("1.1.0") == 100
    assert load.summary is not None and load.summary.sent > 500
    assert load.summary.failed == 0, load.summary.to_dict()
    assert load.summary.by_version.get("1.1.0", 0) > 0


def test_slow_canary_is_rolled_back_by_the_p99_gate(ws: E2EWorkspace) -> None:
    ws.deploy_v1()
    ws.spec(
        "1.1.0",
        artifact=f"{NAME}-1.1.0-slow.onnx",
        steps=[(25, 6.0), (100, 0.0)],
        gates="[{metric: latency_p99, max_increase: 0.5}]",
    )
    with RoutingWatch(ws) as watch, Load(ws, rate=50.0):
        result = ws.mlops("apply", "--auto-approve", "specs/", expect=3)
    assert "latency_p99" in result.output
    model = ws.model()
    assert model["stable"] == "1.0.0" and model["canary"] is None
    assert model["weights"] == {"1.0.0": 100}
    row = version_row(model, "1.1.0")
    assert row["status"] == "rejected" and "latency_p99" in str(row["rejected_reason"])
    assert not row["loaded"]
    assert watch.max_weight.get("1.1.0", 0) <= 25


def test_erroring_canary_is_rolled_back_by_the_error_rate_gate(ws: E2EWorkspace) -> None:
    ws.deploy_v1()
    ws.spec(
        "1.1.0",
        artifact=f"{NAME}-1.1.0-erroring.onnx",
        steps=[(25, 6.0), (100, 0.0)],
        gates="[{metric: error_rate, max: 0.01}]",
    )
    with RoutingWatch(ws) as watch, Load(ws, rate=100.0, poison_every=10):
        result = ws.mlops("apply", "--auto-approve", "specs/", expect=3)
    assert "error_rate" in result.output
    model = ws.model()
    assert model["stable"] == "1.0.0" and model["weights"] == {"1.0.0": 100}
    row = version_row(model, "1.1.0")
    assert row["status"] == "rejected" and "error_rate" in str(row["rejected_reason"])
    assert watch.max_weight.get("1.1.0", 0) <= 25


def test_broken_model_is_stopped_by_conformance_without_traffic(ws: E2EWorkspace) -> None:
    ws.deploy_v1()
    ws.spec("1.2.0", accuracy_of="1.0.0")  # claims 1.0.0's accuracy; its labels are inverted
    with RoutingWatch(ws) as watch:
        result = ws.mlops("apply", "--auto-approve", "specs/", expect=3)
    assert "conformance" in result.output
    model = ws.model()
    assert model["weights"] == {"1.0.0": 100} and model["stable"] == "1.0.0"
    row = version_row(model, "1.2.0")
    assert row["status"] == "rejected" and not row["loaded"]
    assert watch.samples > 0 and watch.max_weight.get("1.2.0", 0) == 0


def test_no_traffic_pauses_then_promote_resumes(ws: E2EWorkspace) -> None:
    ws.deploy_v1()
    ws.spec("1.1.0", steps=[(25, 2.0), (100, 0.0)])
    result = ws.mlops("apply", "--auto-approve", "specs/", expect=4)
    assert "mlops promote fraud-scorer" in result.output
    model = ws.model()
    assert model["rollout"]["status"] == "paused"
    assert model["weights"] == {"1.0.0": 75, "1.1.0": 25}
    assert model["stable"] == "1.0.0"  # never promoted on missing data

    ws.mlops("promote", NAME)
    model = ws.model()
    assert model["stable"] == "1.1.0" and model["weights"] == {"1.1.0": 100}
    journal = (ws.root / ".mlops" / "journal").glob("*.jsonl")
    events = [json.loads(line) for path in journal for line in path.read_text().splitlines()]
    decisions = [e for e in events if e["event"] == "decision"]
    assert decisions and "promote" in decisions[0]["data"]["decision"]
    assert "@" in decisions[0]["data"]["by"]  # who decided


def test_metrics_outage_aborts_and_never_promotes(ws: E2EWorkspace) -> None:
    if not any(
        os.access(os.path.join(p, "prometheus"), os.X_OK) for p in os.environ["PATH"].split(":")
    ):
        pytest.skip("prometheus is not installed")
    ws.config(metrics="prometheus")
    ws.deploy_v1()
    ws.spec("1.1.0", steps=[(25, 30.0), (100, 0.0)], consecutive_errors=3)
    with Load(ws, rate=100.0):
        apply = ws.start("apply", "--auto-approve", "specs/")
        record = ws.root / ".mlops" / "rollouts" / f"{NAME}.json"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if record.is_file() and (json.loads(record.read_text()).get("gates") or []):
                break  # the hold has measured at least once through Prometheus
            assert apply.poll() is None, apply.stdout.read() if apply.stdout else ""
            time.sleep(0.2)
        pid = json.loads((ws.root / ".mlops" / "prometheus.json").read_text())["pid"]
        os.kill(int(pid), signal.SIGKILL)
        output, _ = apply.communicate(timeout=120)
    assert apply.returncode == 3, output
    assert "metrics backend failed" in output
    model = ws.model()
    assert model["stable"] == "1.0.0" and model["weights"] == {"1.0.0": 100}
    row = version_row(model, "1.1.0")
    assert row["status"] != "rejected"  # the version was not judged, the backend failed
    assert model["rollout"]["status"] == "rolled_back"
