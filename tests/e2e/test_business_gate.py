"""A business gate rolls back a canary whose positive rate drops (issue 14), end to end.

Real engine, real apply, both metrics backends. The test's own clients call the model and
report an outcome for every answer through /v2/feedback, attributed by the answer's
`x-request-id` and `x-mlops-version`: 4 in 5 outcomes of the stable version are positive,
1 in 5 of the canary's. Its error rate and latency are as good as the stable version's, so
only the `positive_rate` gate can stop it.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from mlops import loadgen
from tests.e2e.conftest import NAME, E2EWorkspace, RoutingWatch

pytestmark = pytest.mark.slow

POSITIVE_IN_5 = {"1.0.0": 4, "1.1.0": 1}
GATE = "[{metric: positive_rate, max_decrease: 0.3, min_outcomes: 20}]"


@contextmanager
def business_load(ws: E2EWorkspace, clients: int = 4) -> Iterator[Counter[str]]:
    """Clients that infer and report each answer's outcome; yields what they saw: the
    inference and feedback status codes, and outcomes reported per version."""
    seen: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    started = threading.Event()
    infer = f"{ws.url()}/v2/models/{NAME}/infer"
    feedback = f"{ws.url()}/v2/feedback"

    def run(seed: int) -> None:
        with httpx.Client(timeout=10.0) as client:
            i = 0
            while not stop.is_set():
                i += 1
                body = loadgen.body(30, 1, False, seed * 1_000_003 + i)
                answer = client.post(infer, content=body)
                version = answer.headers.get("x-mlops-version", "")
                with lock:
                    seen[f"infer {answer.status_code}"] += 1
                    n = seen[f"outcomes {version}"]
                    seen[f"outcomes {version}"] += 1
                if answer.status_code != 200:
                    continue
                positive = n % 5 < POSITIVE_IN_5.get(version, 5)
                report = {
                    "request_id": answer.headers["x-request-id"],
                    "value": 1 if positive else 0,
                    "model": NAME,
                    "version": version,
                }
                code = client.post(feedback, json=report).status_code
                with lock:
                    seen[f"feedback {code}"] += 1
                    if seen["feedback 200"] >= 50:
                        started.set()

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    try:
        assert started.wait(60), f"the business load did not get going: {seen}"
        yield seen
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)


@pytest.mark.parametrize("backend", ["builtin", "prometheus"])
def test_a_canary_whose_positive_rate_drops_is_rolled_back(ws: E2EWorkspace, backend: str) -> None:
    ws.config(metrics=backend)
    ws.deploy_v1()
    ws.spec("1.1.0", steps=[(25, 12.0), (100, 0.0)], gates=GATE)
    plan = ws.mlops("plan", "specs/")
    assert "positive_rate >= -30% vs stable and over >= 20 outcomes" in plan.output, plan.output
    with RoutingWatch(ws) as watch, business_load(ws) as seen:
        result = ws.mlops("apply", "--auto-approve", "specs/", expect=3)
    assert "gate failed at 25%: positive_rate" in result.output, result.output
    model = ws.model()
    assert model["stable"] == "1.0.0" and model["weights"] == {"1.0.0": 100}
    row = next(r for r in model["versions"] if r["semver"] == "1.1.0")
    assert row["status"] == "rejected" and "positive_rate" in str(row["rejected_reason"])
    assert watch.max_weight.get("1.1.0", 0) == 25
    # Gate history: the failing round, its value, the stable reference and the outcomes.
    rounds = model["rollout"]["gates"]
    failed = [m for r in rounds for m in r["measurements"] if m["verdict"] == "failed"]
    assert failed and failed[-1]["gate"] == "positive_rate", rounds
    last = failed[-1]
    assert last["value"] < 0.5 < 0.7 < last["reference"], last
    assert last["requests"] >= 20 and "outcomes" in last["threshold"], last
    text = ws.mlops("status").stdout
    assert "positive_rate=" in text and "outcomes" in text, text
    # Every call answered and every outcome accepted: the rollback came from the outcomes.
    assert set(k for k in seen if k.startswith(("infer", "feedback"))) == {
        "infer 200",
        "feedback 200",
    }, seen
