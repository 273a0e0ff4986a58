"""Both Metrics providers against a real engine (2 workers) and a real Prometheus.

Gates judge what the router sent: the counted traffic goes through the routed endpoint to
single-route tables (so every count is known exactly), and clean requests sent straight to
the same version (`/versions/V/infer`) must change nothing a gate reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mlops.providers.base import Metrics, Sample
from mlops.providers.engine.runtime import LocalRuntime
from mlops.providers.metrics import builtin as builtin_metrics
from mlops.providers.metrics import prometheus
from mlops.spec import models as spec
from mlops.state import models as state
from mlops.workspace import Workspace
from tests.runtime import support
from tests.serving import fixtures

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not prometheus.installed(), reason="needs the prometheus package"),
]

ERR = spec.Gate(metric="error_rate", max=0.01)
P99 = spec.Gate(metric="latency_p99", max=100.0)
P50 = spec.Gate(metric="latency_p50", max=100.0)
AGREE = spec.Gate(metric="shadow_agreement", min=0.5)
GOOD, POISON, MALFORMED, CLF = 60, 30, 10, 200
DIRECT = 300  # clean requests to /versions/1.0.0/infer: they would dilute the error rate


@dataclass
class Target:
    workspace: Workspace
    runtime: LocalRuntime
    server: prometheus.PrometheusServer
    builtin: builtin_metrics.BuiltinMetrics
    started: float


def send(url: str, path: str, rows: list[list[float]], times: int, expect: int) -> None:
    body = {
        "inputs": [
            {"name": "input", "datatype": "FP32", "shape": [1, len(rows[0])], "data": rows[0]}
        ]
    }
    with httpx.Client(base_url=url) as client:
        for _ in range(times):
            assert client.post(path, json=body).status_code == expect


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    root = tmp_path_factory.mktemp("metrics")
    ws = support.make_workspace(root)
    with support.running(ws, replicas=2) as rt:
        server = prometheus.PrometheusServer(ws)
        server.start()
        try:
            builtin = builtin_metrics.BuiltinMetrics(rt.worker_admin_urls)
            assert builtin.observe() is None
            started = time.monotonic()
            artifacts = root / "artifacts"
            artifacts.mkdir()
            flaky = artifacts / "flaky.onnx"
            flaky.write_bytes(fixtures.erroring_bytes())
            rt.load("flaky", "1.0.0", flaky, fixtures.erroring_settings())
            settings = fixtures.classifier_settings()
            rt.load("clf", "1.0.0", support.classifier_artifact(artifacts, 0), settings)
            rt.load("clf", "1.1.0", support.classifier_artifact(artifacts, 3), settings)
            rt.set_traffic("flaky", {"1.0.0": 100}, None)
            rt.set_traffic("clf", {"1.0.0": 100}, None)
            url = rt.inference_url()
            send(url, "/v2/models/flaky/infer", [[0.1] * 4], GOOD, 200)
            send(url, "/v2/models/flaky/infer", [[7.0] * 4], POISON, 500)
            send(url, "/v2/models/flaky/infer", [[0.1] * 3], MALFORMED, 400)
            send(url, "/v2/models/flaky/versions/1.0.0/infer", [[0.1] * 4], DIRECT, 200)
            send(url, "/v2/models/clf/infer", [[0.2] * 8], CLF, 200)
            send(url, "/v2/models/clf/versions/1.1.0/infer", [[0.2] * 8], DIRECT, 200)
            yield Target(ws, rt, server, builtin, started)
        finally:
            server.stop()


def window(t: Target) -> float:
    # Everything since the fixture's first snapshot. The provider starts a window at the
    # newest snapshot at least 75% of the window old, so a window barely longer than the
    # module's run could start at a later snapshot; a generous margin cannot.
    return 4 * (time.monotonic() - t.started) + 60.0


def wait_for_scrape(metrics: Metrics, model: str, version: str, want: float) -> Sample:
    """Prometheus sees the traffic after its next scrape (every second): wait, bounded."""
    deadline = time.monotonic() + 15
    while True:
        s = metrics.sample(model, version, ERR, 120)
        if (s.error is None and s.requests >= want) or time.monotonic() > deadline:
            return s
        time.sleep(0.5)


def until(read: Callable[[], Sample], want: float, timeout: float = 15.0) -> Sample:
    """The first sample counting at least `want` requests (polled, bounded): the exact-count
    assertions that follow never depend on a fixed sleep."""
    deadline = time.monotonic() + timeout
    while (sample := read()).requests < want and time.monotonic() < deadline:
        time.sleep(0.1)
    return sample


def test_builtin_counts_are_exact(target: Target) -> None:
    b = target.builtin
    w = window(target)
    flaky = b.sample("flaky", "1.0.0", ERR, w)
    # 4xx excluded, and the DIRECT clean requests too: they are not what the router sent.
    assert flaky == Sample(POISON / (GOOD + POISON), GOOD + POISON)
    assert b.sample("clf", "1.0.0", ERR, w) == Sample(0.0, CLF)
    p99 = b.sample("clf", "1.0.0", P99, w)
    p50 = b.sample("clf", "1.0.0", P50, w)
    assert p99.value is not None and p50.value is not None
    assert 0 < p50.value <= p99.value < 1000
    assert p99.requests == CLF
    # Loaded and called only directly: no routed data, not zero.
    assert b.sample("clf", "1.1.0", P99, w) == Sample(None, 0)
    assert b.sample("clf", "1.1.0", ERR, w).requests == 0
    assert b.sample("nope", "1.0.0", ERR, w) == Sample(None, 0)
    query = spec.Gate(name="ctr", query="sum(up)", min=1)
    assert b.sample("clf", "1.0.0", query, w).error == "query gates need Prometheus"


def test_builtin_window_excludes_older_traffic(target: Target) -> None:
    b = target.builtin
    time.sleep(1.0)
    assert b.observe() is None
    mark = time.monotonic()
    send(target.runtime.inference_url(), "/v2/models/clf/infer", [[0.3] * 8], 7, 200)
    # Counted once answered: wait for the condition (bounded), then the count is exact.
    got = until(lambda: b.sample("clf", "1.0.0", ERR, time.monotonic() - mark), 7)
    assert got.requests == 7


def test_builtin_unreachable_engine_is_an_error_sample(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{support.free_port()}"
    b = builtin_metrics.BuiltinMetrics(lambda: [dead])
    sample = b.sample("clf", "1.0.0", ERR, 10)
    assert sample.value is None and sample.error and dead in sample.error
    assert builtin_metrics.BuiltinMetrics(list).sample("clf", "1.0.0", ERR, 10).error


def test_prometheus_scrapes_every_worker_and_agrees(target: Target) -> None:
    p = prometheus.PrometheusMetrics(target.server.url)
    assert isinstance(p, Metrics)
    flaky = wait_for_scrape(p, "flaky", "1.0.0", GOOD + POISON)
    assert flaky.error is None
    assert flaky.requests == GOOD + POISON
    assert flaky.value == pytest.approx(POISON / (GOOD + POISON))
    # Exactly what the built-in scraper counted over the same span (earlier tests add some).
    served = target.builtin.sample("clf", "1.0.0", ERR, window(target)).requests
    assert served >= CLF
    wait_for_scrape(p, "clf", "1.0.0", served)
    assert p.sample("clf", "1.0.0", ERR, 120) == Sample(0.0, served)
    p99 = p.sample("clf", "1.0.0", P99, 120)
    builtin_p99 = target.builtin.sample("clf", "1.0.0", P99, window(target))
    assert p99.value == pytest.approx(builtin_p99.value, rel=0.01)
    assert p.sample("clf", "1.1.0", P99, 120).value is None  # direct calls only: no data
    assert p.sample("clf", "1.1.0", ERR, 120).requests == 0
    up = spec.Gate(name="workers", query="count(up{job='mlops-engine'} == 1)", min=2)
    assert p.sample("clf", "1.0.0", up, 120) == Sample(2.0, served)
    bad = spec.Gate(name="bad", query="sum(rate(", min=0)
    assert "prometheus" in (p.sample("clf", "1.0.0", bad, 120).error or "")


def test_shadow_agreement_from_both_providers(target: Target) -> None:
    rt = target.runtime
    rt.set_traffic("clf", {"1.0.0": 100}, state.ShadowRoute(version="1.1.0", percent=100))
    mark = time.monotonic()
    target.builtin.observe()
    rows = support.rows(150, seed=5)
    with httpx.Client(base_url=rt.inference_url()) as client:
        for row in rows:
            body = {
                "inputs": [
                    {"name": "input", "datatype": "FP32", "shape": [1, 8], "data": row.tolist()}
                ]
            }
            assert client.post("/v2/models/clf/infer", json=body).status_code == 200
    # Mirrored requests run after the primary answered: wait until all were compared.
    builtin = until(
        lambda: target.builtin.sample("clf", "1.1.0", AGREE, time.monotonic() - mark + 0.2), 150
    )
    span = time.monotonic() - mark + 0.2
    assert builtin.requests == 150
    assert builtin.value is not None and 0.5 < builtin.value <= 1.0
    # The shadow's own requests: every mirrored one ran, none failed, each has a latency.
    mirrored = target.builtin.sample("clf", "1.1.0", ERR, span, traffic="shadow")
    assert mirrored == Sample(0.0, 150)
    shadow_p99 = target.builtin.sample("clf", "1.1.0", P99, span, traffic="shadow")
    assert shadow_p99.requests == 150 and shadow_p99.value is not None
    # ...and none of them is a routed request of 1.1.0.
    assert target.builtin.sample("clf", "1.1.0", ERR, span).requests == 0
    p = prometheus.PrometheusMetrics(target.server.url)
    deadline = time.monotonic() + 15
    while (got := p.sample("clf", "1.1.0", AGREE, 60)).requests < 150:
        assert time.monotonic() < deadline, got
        time.sleep(0.5)
    assert got.value == pytest.approx(builtin.value)
    assert p.sample("clf", "1.1.0", ERR, 60, traffic="shadow") == Sample(0.0, 150)
    p99 = p.sample("clf", "1.1.0", P99, 60, traffic="shadow")
    assert p99.value == pytest.approx(shadow_p99.value, rel=0.01)


def test_prometheus_down_is_an_error_sample_and_server_restarts(target: Target) -> None:
    server = target.server
    url = server.url
    assert server.stop() is True
    assert server.stop() is False
    sample = prometheus.PrometheusMetrics(url).sample("clf", "1.0.0", ERR, 10)
    assert sample.value is None and sample.error and url in sample.error
    assert server.start().startswith("http://127.0.0.1:")
    assert server.running()
    assert len(server.sync_targets()) == 2
