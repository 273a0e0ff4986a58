"""Prometheus returning empty results or garbage during a canary's hold (issue 15, faults).

The workspace's `metrics:` is the URL of a real loopback HTTP server answering every query
with a fixed body. Documented outcomes (docs/faults.md):
- empty results: every gate is `inconclusive` (missing data never passes), the hold ends
  without a passing round and the rollout pauses at its canary weight (exit 4); `mlops
  rollback` then restores the stable version;
- garbage (not JSON, or JSON of the wrong shape): every round is a measurement `error`;
  after `consecutive_errors` rounds the canary is rolled back as "metrics backend failed"
  (exit 3) and the version is not rejected (it was never judged).
In every case the canary never gets more than its first step's weight.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import NAME, E2EWorkspace, Load, RoutingWatch
from tests.faults.conftest import FakePrometheus

pytestmark = pytest.mark.slow

EMPTY = b'{"status":"success","data":{"resultType":"vector","result":[]}}'
GARBAGE = {
    "not json": b"<html>502 Bad Gateway</html>",
    "wrong shape": b'{"status":"success","data":{"resultType":"vector","result":[{"value":7}]}}',
    "not a number": (
        b'{"status":"success","data":{"resultType":"vector",'
        b'"result":[{"metric":{},"value":[1,"zebra"]}]}}'
    ),
}


def canary(ws: E2EWorkspace, url: str) -> str:
    ws.deploy_v1()
    ws.config(metrics=url)
    ws.spec("1.1.0", steps=[(25, 2.0), (100, 0.0)], interval=0.5, consecutive_errors=2)
    return ws.plan()


def test_empty_results_pause_the_rollout(ws: E2EWorkspace) -> None:
    with FakePrometheus(lambda path: EMPTY, avoid=ws.port) as prometheus:
        plan = canary(ws, prometheus.url)
        with RoutingWatch(ws) as watch, Load(ws, rate=50.0):
            paused = ws.mlops("apply", plan, expect=4)
        assert prometheus.requests > 0
    assert "inconclusive" in paused.output, paused.output
    assert watch.max_weight.get("1.1.0", 0) == 25, watch.max_weight
    model = ws.model()
    assert model["weights"] == {"1.0.0": 75, "1.1.0": 25}
    assert model["rollout"]["status"] == "paused"
    ws.mlops("rollback", NAME)
    model = ws.model()
    assert model["weights"] == {"1.0.0": 100} and model["stable"] == "1.0.0"


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_garbage_aborts_without_rejecting(ws: E2EWorkspace, kind: str) -> None:
    body = GARBAGE[kind]
    with FakePrometheus(lambda path: body, avoid=ws.port) as prometheus:
        plan = canary(ws, prometheus.url)
        with RoutingWatch(ws) as watch, Load(ws, rate=50.0):
            aborted = ws.mlops("apply", plan, expect=3)
        assert prometheus.requests > 0
    assert "metrics backend failed" in aborted.output, aborted.output
    assert "Traceback" not in aborted.output
    assert watch.max_weight.get("1.1.0", 0) <= 25, watch.max_weight
    model = ws.model()
    assert model["weights"] == {"1.0.0": 100} and model["stable"] == "1.0.0"
    row = next(r for r in model["versions"] if r["semver"] == "1.1.0")
    assert row["status"] != "rejected", row
