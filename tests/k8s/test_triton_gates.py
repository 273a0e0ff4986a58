"""Triton first-class: gates compile to Triton's own metric names and are answered by a real
Prometheus scraping a Triton /metrics stand-in; conformance sizes batches from Triton's model
configuration endpoint, not from its metadata (which has no max_batch_size)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2 as pb

from mlops import errors
from mlops.conformance import runner
from mlops.providers.kubernetes import triton
from mlops.providers.metrics import prometheus, promql
from mlops.spec import models as spec
from tests.k8s import conftest as c
from tests.k8s.standin import Prometheus, Traffic, TritonExporter
from tests.serving import fixtures
from tests.serving.conftest import EngineThread

ERRORS = spec.Gate(metric="error_rate", max=0.01)
P99 = spec.Gate(metric="latency_p99", max=50)
P50 = spec.Gate(metric="latency_p50", max=50)
AGREE = spec.Gate(metric="shadow_agreement", min=0.99)
VERSIONS = {"1.0.0": "7", "1.1.0": "8"}  # semver -> Triton's integer version


def test_named_gates_compile_to_triton_metric_names() -> None:
    for gate in (ERRORS, P99, P50):
        query = promql.gate_query(gate, "m", "8", "30s", dialect="triton")
        count = promql.request_count(gate, "m", "8", "30s", dialect="triton")
        assert "mlops_" not in query + count and "route=" not in query + count
        assert 'version="8"' in query and promql.TRITON_SUCCESS in count
    assert promql.TRITON_FAILURE in promql.gate_query(ERRORS, "m", "8", "30s", dialect="triton")
    latency = promql.gate_query(P99, "m", "8", "30s", dialect="triton")
    assert latency.startswith("histogram_quantile(0.99") and "_ms_bucket" in latency
    assert "* 1000" not in latency  # Triton's histogram is already in milliseconds
    assert promql.TRITON_DURATION_US in promql.triton_mean_latency_ms("m", "8", "30s")
    with pytest.raises(promql.Unanswerable, match="shadow_agreement needs engine: mlops"):
        promql.gate_query(AGREE, "m", "8", "30s", dialect="triton")
    custom = spec.Gate(name="q", query="vector(1)", max=2)
    assert promql.gate_query(custom, "m", "8", "30s", dialect="triton") == "vector(1)"


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TritonExporter, str]]:
    exporter = TritonExporter("fraud-scorer")
    exporter.set("7", Traffic(rate=200, failing=0.0, latencies_ms=(2.0, 3.0, 4.0, 8.0)))
    # The canary: one request in ten fails, a quarter of them take 150 ms.
    exporter.set("8", Traffic(rate=200, failing=0.1, latencies_ms=(3.0, 4.0, 8.0, 150.0)))
    server = Prometheus(tmp_path_factory.mktemp("prometheus"), [exporter.address])
    try:
        server.scraped('nv_inference_request_success{version="8"} > 0')
        yield exporter, server.url
    finally:
        server.close()
        exporter.close()


@pytest.mark.slow  # a real Prometheus scraping the stand-in for a few seconds
def test_gates_are_answered_from_triton_metrics(scraped: tuple[TritonExporter, str]) -> None:
    _, url = scraped
    metrics = prometheus.PrometheusMetrics(
        url, dialect="triton", version_label=lambda model, semver: VERSIONS[semver]
    )
    stable = metrics.sample("fraud-scorer", "1.0.0", ERRORS, 10)
    canary = metrics.sample("fraud-scorer", "1.1.0", ERRORS, 10)
    assert stable.error is None and canary.error is None, (stable, canary)
    assert stable.value == 0.0 and stable.requests > 0
    assert canary.value is not None and 0.08 <= canary.value <= 0.12, canary
    p99 = metrics.sample("fraud-scorer", "1.1.0", P99, 10)
    assert p99.value is not None and 100 <= p99.value <= 200, p99  # in the 100-200 ms bucket
    stable_p50 = metrics.sample("fraud-scorer", "1.0.0", P50, 10)
    assert stable_p50.value is not None and stable_p50.value <= 5, stable_p50
    agreement = metrics.sample("fraud-scorer", "1.1.0", AGREE, 10)
    assert agreement.value is None and "Triton does not compare" in (agreement.error or "")


def _triton_config_json(max_batch_size: int) -> dict[str, Any]:
    """What Triton answers on /config: its ModelConfig message as JSON."""
    d = c.deployment(batching={"max_batch_size": max_batch_size, "max_queue_delay_ms": 1})
    serving = d.spec.serving
    text = triton.model_config(
        d.name, 7, d.spec.model.signature, serving.batching, serving.hardware
    )
    message = text_format.Parse(text, pb.ModelConfig())
    doc: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return doc


class TritonFront:
    """Triton's HTTP answers for one model: /config from the rendered config.pbtxt, metadata
    without max_batch_size (as Triton's); `config=False` plays a server without /config."""

    def __init__(self, config: dict[str, Any] | None) -> None:
        self.paths: list[str] = []
        front = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                front.paths.append(self.path)
                if self.path.endswith("/config") and config is not None:
                    self._json(200, config)
                elif self.path == "/v2/models/fraud-scorer/versions/2.3.1":
                    self._json(200, {"name": "fraud-scorer", "versions": ["7"], "inputs": []})
                else:
                    self._json(404, {"error": "not found"})

            def _json(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def test_conformance_reads_max_batch_size_from_the_config_endpoint() -> None:
    front = TritonFront(_triton_config_json(32))
    try:
        # Triton's metadata has no max_batch_size: only the config endpoint knows it.
        limit = runner.max_batch_size(front.url, "fraud-scorer", "2.3.1", lambda: 0)
        assert limit == 32
        assert front.paths == ["/v2/models/fraud-scorer/versions/2.3.1/config"]
    finally:
        front.close()
    unbatched = TritonFront(_triton_config_json(1))  # max_batch_size 0 in Triton: no batching
    try:
        assert runner.max_batch_size(unbatched.url, "fraud-scorer", "2.3.1", lambda: 99) == 0
    finally:
        unbatched.close()
    bare = TritonFront(None)  # a server without the configuration extension: metadata
    try:
        assert runner.max_batch_size(bare.url, "fraud-scorer", "2.3.1", lambda: 16) == 16
    finally:
        bare.close()
    with pytest.raises(errors.TransientError, match="model configuration"):
        runner.max_batch_size("http://127.0.0.1:9", "fraud-scorer", "2.3.1", lambda: 0)


def test_the_mlops_engine_answers_the_same_config_endpoint(tmp_path: Path) -> None:
    from mlops.serving.config import ServeConfig

    repo = tmp_path / "repository"
    settings = fixtures.classifier_settings(max_batch_size=24, max_queue_delay_ms=1)
    fixtures.write_version(repo, "clf", "1.0.0", fixtures.classifier_bytes(), settings)
    engine = EngineThread(ServeConfig(repository=repo, state_dir=tmp_path / "state"))
    try:
        assert runner.max_batch_size(engine.url, "clf", "1.0.0", lambda: 0) == 24
    finally:
        engine.stop()


def test_the_workspace_metrics_speak_the_configured_engine(tmp_path: Path) -> None:
    from mlops import workspace
    from mlops.providers import factory

    def metrics_for(kubernetes: str) -> prometheus.PrometheusMetrics:
        (tmp_path / "mlops.yaml").write_text(
            "target: kubernetes\nmetrics: http://prometheus.example.com:9090\n"
            f"kubernetes: {kubernetes}\n"
        )
        ws = workspace.open_workspace(tmp_path)
        made = factory.metrics(ws, factory.runtime(ws))
        assert isinstance(made, prometheus.PrometheusMetrics)
        return made

    assert metrics_for("{engine: mlops}").dialect == "mlops"
    assert metrics_for(f"{{engine: triton, image: '{c.TRITON}'}}").dialect == "triton"
