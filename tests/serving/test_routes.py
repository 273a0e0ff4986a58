"""Requests are counted by how they reached a version (`route`: routed, direct, shadow), and a
mirrored request is never answered to a client, whatever the shadow does with it."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlops.serving.config import ServeConfig
from mlops.serving.stats import StatsBook
from tests.serving import fixtures
from tests.serving.conftest import EngineThread

AGREE, DIFFER, FAIL = 0.5, 1.5, fixtures.POISON  # what the erroring shadow does with each
N_AGREE, N_DIFFER, N_FAIL, N_DIRECT = 30, 20, 10, 25


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineThread]:
    """Model `pair`: 1.0.0 answers (identity), 1.1.0 is a shadow that errors or differs."""
    root = tmp_path_factory.mktemp("routes")
    settings = fixtures.erroring_settings()
    fixtures.write_version(root / "repo", "pair", "1.0.0", fixtures.identity_bytes(), settings)
    fixtures.write_version(root / "repo", "pair", "1.1.0", fixtures.erroring_bytes(), settings)
    server = EngineThread(ServeConfig(repository=root / "repo", state_dir=root / "state"))
    yield server
    server.stop()


def body(value: float) -> dict[str, object]:
    return {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [value] * 4}]}


def counters(text: str) -> dict[tuple[str, ...], float]:
    """(sample name, sorted label values...) -> value, for the families these tests read."""
    found: dict[tuple[str, ...], float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("model") == "pair" or not s.labels:
                labels = tuple(f"{k}={v}" for k, v in sorted(s.labels.items()) if k != "model")
                found[(s.name, *labels)] += s.value
    return found


def test_mirrored_requests_count_as_shadow_and_are_never_answered(pair: EngineThread) -> None:
    with httpx.Client(base_url=pair.url, timeout=30) as client:
        routing = {"weights": {"1.0.0": 100}, "shadow": {"version": "1.1.0", "percent": 100}}
        assert httpx.put(f"{pair.admin_url}/v2/routing/pair", json=routing).status_code == 200
        for value, times in ((AGREE, N_AGREE), (DIFFER, N_DIFFER), (FAIL, N_FAIL)):
            for _ in range(times):
                reply = client.post("/v2/models/pair/infer", json=body(value))
                # The client always gets the primary's answer: identity, from 1.0.0.
                assert reply.status_code == 200, reply.text
                assert reply.headers["x-mlops-version"] == "1.0.0"
                (out,) = reply.json()["outputs"]
                assert out["shape"] == [1, 4] and out["data"] == [value] * 4
        for _ in range(N_DIRECT):
            reply = client.post("/v2/models/pair/versions/1.1.0/infer", json=body(AGREE))
            assert reply.status_code == 200 and reply.headers["x-mlops-version"] == "1.1.0"
        mirrored = N_AGREE + N_DIFFER + N_FAIL
        deadline = time.monotonic() + 30
        while True:  # queued mirrors finish after their primary answered
            got = counters(client.get("/metrics").text)
            shadow_done = sum(
                v
                for k, v in got.items()
                if k[0] == "mlops_requests_total" and "route=shadow" in k and "version=1.1.0" in k
            )
            if shadow_done >= mirrored or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    routed = N_AGREE + N_DIFFER + N_FAIL
    total = "mlops_requests_total"
    assert got[(total, "code=200", "route=routed", "version=1.0.0")] == routed
    assert got[(total, "code=200", "route=shadow", "version=1.1.0")] == N_AGREE + N_DIFFER
    assert got[(total, "code=500", "route=shadow", "version=1.1.0")] == N_FAIL
    assert got[(total, "code=200", "route=direct", "version=1.1.0")] == N_DIRECT
    assert got.get((total, "code=200", "route=routed", "version=1.1.0"), 0) == 0
    assert got.get((total, "code=200", "route=shadow", "version=1.0.0"), 0) == 0
    # Latency of the mirrored runs that succeeded, in their own histogram series.
    count = "mlops_request_duration_seconds_count"
    assert got[(count, "route=shadow", "version=1.1.0")] == N_AGREE + N_DIFFER
    assert got[(count, "route=direct", "version=1.1.0")] == N_DIRECT
    assert got[(count, "route=routed", "version=1.0.0")] == routed
    agreement = "mlops_shadow_agreement_total"
    assert got[(agreement, "agree=true", "version=1.1.0")] == N_AGREE
    assert got[(agreement, "agree=false", "version=1.1.0")] == N_DIFFER
    # The older family still carries the mirrored counts.
    legacy = "mlops_shadow_requests_total"
    assert got[(legacy, "code=500", "version=1.1.0")] == N_FAIL


def test_request_rate_counts_client_requests_not_mirrors() -> None:
    book = StatsBook()
    stats = book.get("m", "1.1.0")
    stats.mirrored.requests["200"] += 600
    assert book.request_rates(book.started + 60.0)["m"] == 0.0
    stats.direct.requests["200"] += 30
    stats.routed.requests["500"] += 30
    rate = book.request_rates(book.started + 120.0)["m"]
    assert 0.0 < rate <= 1.0  # 60 client requests over 60 s, exponentially weighted


def test_old_attribute_names_read_the_routed_counters() -> None:
    stats = StatsBook().get("m", "1.0.0")
    stats.routed.requests["200"] += 2
    stats.direct.requests["200"] += 5
    stats.mirrored.requests["500"] += 1
    assert stats.requests == {"200": 2}
    assert stats.shadow == {"500": 1}
    assert stats.duration is stats.routed.duration
