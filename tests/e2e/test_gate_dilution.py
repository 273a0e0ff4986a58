"""A canary's gates cannot be diluted by direct traffic (issue 9 #2), end to end.

The canary fails every poisoned request the router sends it (10% of them) while a client
floods it with clean requests at `/v2/models/NAME/versions/CANARY/infer`. Judged on
everything it ran, its error rate would sit under the gate's 5% and it would be promoted;
judged on what the router sent it, it fails and is rolled back.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlops import loadgen
from tests.e2e.conftest import NAME, E2EWorkspace, Load, RoutingWatch

pytestmark = pytest.mark.slow

GATE_MAX = 0.05


@contextmanager
def direct_flood(ws: E2EWorkspace, version: str, clients: int = 4) -> Iterator[Counter[str]]:
    """Clean requests to `version` by name, as fast as `clients` connections go, for the length
    of the block. Yields the status codes seen (404 until the version is loaded)."""
    codes: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    path = f"{ws.url()}/v2/models/{NAME}/versions/{version}/infer"

    def run(seed: int) -> None:
        with httpx.Client(timeout=10.0) as client:
            i = 0
            while not stop.is_set():
                i += 1
                body = loadgen.body(30, 1, False, seed * 1_000_003 + i)
                try:
                    code = str(client.post(path, content=body).status_code)
                except httpx.HTTPError as exc:
                    code = type(exc).__name__
                    stop.wait(0.05)  # no engine yet: do not spin
                with lock:
                    codes[code] += 1

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield codes
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)


def canary_counts(ws: E2EWorkspace, version: str) -> Counter[tuple[str, str]]:
    """(route, code) -> requests of `version`, summed over the engine's workers."""
    counts: Counter[tuple[str, str]] = Counter()
    for url in ws.admin_urls():
        text = httpx.get(f"{url}/metrics", headers=ws.admin_headers(), timeout=10).text
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "mlops_requests_total" and s.labels.get("version") == version:
                    counts[s.labels["route"], s.labels["code"]] += int(s.value)
    return counts


@pytest.mark.parametrize("backend", ["builtin", "prometheus"])
def test_a_flooding_direct_client_cannot_get_an_erroring_canary_promoted(
    ws: E2EWorkspace, backend: str
) -> None:
    if backend == "prometheus" and not any(
        os.access(os.path.join(p, "prometheus"), os.X_OK) for p in os.environ["PATH"].split(":")
    ):
        pytest.skip("prometheus is not installed")
    ws.config(metrics=backend)
    ws.deploy_v1()
    ws.spec(
        "1.1.0",
        artifact=f"{NAME}-1.1.0-erroring.onnx",
        steps=[(25, 6.0), (100, 0.0)],
        gates=f"[{{metric: error_rate, max: {GATE_MAX}}}]",
    )
    with (
        RoutingWatch(ws) as watch,
        direct_flood(ws, "1.1.0") as flood,
        Load(ws, rate=100.0, poison_every=10) as load,
    ):
        result = ws.mlops("apply", "--auto-approve", "specs/", expect=3)
    counts = canary_counts(ws, "1.1.0")  # a version's counters outlive its unload
    assert "gate failed at 25%: error_rate" in result.output, result.output
    model = ws.model()
    assert model["stable"] == "1.0.0" and model["weights"] == {"1.0.0": 100}
    row = next(r for r in model["versions"] if r["semver"] == "1.1.0")
    assert row["status"] == "rejected" and "error_rate" in str(row["rejected_reason"])
    assert watch.max_weight.get("1.1.0", 0) == 25
    # The flood was real and large enough: over everything the canary ran, its error rate
    # is under the gate, so a gate that counted direct calls would have promoted it.
    routed = sum(n for (route, code), n in counts.items() if route == "routed")
    direct = sum(n for (route, code), n in counts.items() if route == "direct")
    failed = sum(n for (route, code), n in counts.items() if code.startswith("5"))
    # (direct also holds the conformance test's requests, made by name like the flood's)
    assert direct >= flood["200"] > 3 * routed, (counts, flood)
    assert failed / (routed + direct) < GATE_MAX < failed / routed, counts
    # The only failed client requests are poisoned ones the router gave the erroring canary.
    assert load.summary is not None and set(load.summary.by_code) <= {"200", "500"}
    assert load.summary.by_code.get("500", 0) == counts["routed", "500"]
