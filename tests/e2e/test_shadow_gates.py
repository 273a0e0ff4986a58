"""Shadow rollouts end to end (issue 10): during the shadow hold the gates judge the shadow's
own mirrored requests, so a shadow rollout with the default gates promotes when the new
version is healthy and rolls back, before any client request reaches it, when it errors, is
slow or disagrees. Steady load throughout; no client request may fail."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import NAME, E2EWorkspace, Load, RoutingWatch

pytestmark = pytest.mark.slow

SHADOW_HOLD_S = 8.0


def shadow_spec(ws: E2EWorkspace, version: str, *, gates: str = "[]", **kwargs: Any) -> Path:
    """The candidate behind a shadow phase (100% mirrored for SHADOW_HOLD_S), then 100% at
    once: what is judged is the shadow phase alone. `gates: []` means the default gates."""
    path = ws.spec(version, steps=[(100, 0.0)], gates=gates, **kwargs)
    text = path.read_text()
    assert "    strategy: canary\n" in text
    shadow = f"    strategy: shadow\n    shadow: {{percent: 100, hold: {SHADOW_HOLD_S:g}s}}\n"
    path.write_text(text.replace("    strategy: canary\n", shadow))
    return path


def shadow_rounds(model: dict[str, Any]) -> list[dict[str, Any]]:
    rounds: list[dict[str, Any]] = model["rollout"]["gates"]
    return [r for r in rounds if r["weight"] == 0]


def version_row(model: dict[str, Any], semver: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = [r for r in model["versions"] if r["semver"] == semver]
    assert rows, f"{semver} not in {model['versions']}"
    return rows[0]


def use_metrics(ws: E2EWorkspace, backend: str) -> None:
    if backend == "prometheus" and not any(
        os.access(os.path.join(p, "prometheus"), os.X_OK) for p in os.environ["PATH"].split(":")
    ):
        pytest.skip("prometheus is not installed")
    ws.config(metrics=backend)


def assert_no_client_failed(load: Load) -> None:
    assert load.summary is not None and load.summary.sent > 300, load.summary
    assert load.summary.failed == 0, load.summary.to_dict()


@pytest.mark.parametrize("backend", ["builtin", "prometheus"])
def test_healthy_shadow_with_default_gates_promotes(ws: E2EWorkspace, backend: str) -> None:
    use_metrics(ws, backend)
    ws.deploy_v1()
    # Two rounds of 4 s: a p99 over a few hundred requests, not over a 1 s handful.
    shadow_spec(ws, "1.1.0", min_requests=50, interval=4.0)
    plan = ws.plan()
    shown = ws.mlops("show", plan).output
    assert "error_rate" in shown and "latency_p99" in shown  # the default gates, planned
    with RoutingWatch(ws) as watch, Load(ws, rate=100.0) as load:
        ws.mlops("apply", plan)
    model = ws.model()
    assert model["stable"] == "1.1.0" and model["weights"] == {"1.1.0": 100}
    assert model["rollout"]["status"] == "completed"
    rounds = shadow_rounds(model)
    assert rounds and rounds[-1]["decision"] == "promote"
    # Judged on the shadow's own mirrored requests (the first window may still be filling).
    assert {m["traffic"] for r in rounds for m in r["measurements"]} == {"shadow"}
    assert all(m["verdict"] != "failed" for r in rounds for m in r["measurements"])
    last = rounds[-1]["measurements"]
    assert all(m["verdict"] == "passed" and m["requests"] >= 50 for m in last), last
    assert watch.max_weight.get("1.1.0") == 100
    assert_no_client_failed(load)
    text = ws.mlops("status").stdout
    assert "shadow: error_rate=" in text and " mirrored)" in text


@pytest.mark.parametrize("backend", ["builtin", "prometheus"])
def test_erroring_shadow_is_rolled_back_before_any_client_reaches_it(
    ws: E2EWorkspace, backend: str
) -> None:
    use_metrics(ws, backend)
    ws.deploy_v1()
    shadow_spec(ws, "1.1.0", artifact=f"{NAME}-1.1.0-erroring.onnx")
    # Every 10th request carries an out-of-range row: 1.0.0 answers it, the shadow fails it.
    with RoutingWatch(ws) as watch, Load(ws, rate=100.0, poison_every=10) as load:
        result = ws.mlops("apply", "--auto-approve", "specs/", expect=3)
    assert "gate failed in the shadow phase" in result.output and "error_rate" in result.output
    model = ws.model()
    assert model["stable"] == "1.0.0" and model["weights"] == {"1.0.0": 100}
    assert model["shadow"] is None
    row = version_row(model, "1.1.0")
    assert row["status"] == "rejected" and "error_rate" in str(row["rejected_reason"])
    failed = [m for m in shadow_rounds(model)[-1]["measurements"] if m["verdict"] == "failed"]
    assert failed and failed[0]["traffic"] == "shadow" and failed[0]["value"] > 0.05
    assert watch.samples > 0 and watch.max_weight.get("1.1.0", 0) == 0
    assert_no_client_failed(load)
    assert load.summary is not None and "1.1.0" not in load.summary.by_version


def test_slow_shadow_is_rolled_back_by_the_default_latency_gate(ws: E2EWorkspace) -> None:
    ws.deploy_v1()
    shadow_spec(ws, "1.1.0", artifact=f"{NAME}-1.1.0-slow.onnx")
    with RoutingWatch(ws) as watch, Load(ws, rate=50.0) as load:
        result = ws.mlops("apply", "--auto-approve", "specs/", expect=3)
    assert "gate failed in the shadow phase" in result.output, result.output
    model = ws.model()
    assert model["stable"] == "1.0.0" and model["weights"] == {"1.0.0": 100}
    row = version_row(model, "1.1.0")
    assert row["status"] == "rejected" and "latency_p99" in str(row["rejected_reason"])
    assert watch.samples > 0 and watch.max_weight.get("1.1.0", 0) == 0
    assert_no_client_failed(load)
    assert load.summary is not None and "1.1.0" not in load.summary.by_version


def test_disagreeing_shadow_is_rolled_back_by_shadow_agreement(ws: E2EWorkspace) -> None:
    ws.deploy_v1()
    # 1.2.0 learned inverted labels: it passes its own (honest, low) accuracy claim, serves
    # fast and never fails, but its predictions disagree with the stable version's.
    shadow_spec(
        ws,
        "1.2.0",
        gates="[{metric: error_rate, max: 0.001}, {metric: shadow_agreement, min: 0.9}]",
    )
    with RoutingWatch(ws) as watch, Load(ws, rate=100.0) as load:
        result = ws.mlops("apply", "--auto-approve", "specs/", expect=3)
    assert "shadow_agreement" in result.output
    model = ws.model()
    assert model["stable"] == "1.0.0" and model["weights"] == {"1.0.0": 100}
    row = version_row(model, "1.2.0")
    assert row["status"] == "rejected" and "shadow_agreement" in str(row["rejected_reason"])
    assert watch.samples > 0 and watch.max_weight.get("1.2.0", 0) == 0
    assert_no_client_failed(load)
