"""Tracing: engine spans join the caller's trace through `traceparent`, read back from an
in-memory exporter (in process) and from a real OTLP/HTTP receiver on loopback that the test
runs (a `mlops serve` process exporting with the standard OTEL_* variables). With tracing off
the SDK is not even imported."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mlops.serving import tracing
from mlops.serving.config import ServeConfig
from tests.serving import fixtures
from tests.serving.conftest import EngineThread, admin_token_file, free_port, infer_body

MLOPS = [sys.executable, "-c", "from mlops.cli import main; main()"]
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
STAGES = {"decode", "preprocess", "inference", "postprocess"}


@pytest.fixture()
def traced(repo: Path, tmp_path: Path) -> Iterator[tuple[EngineThread, InMemorySpanExporter]]:
    state = tmp_path / "state"
    state.mkdir()
    config = ServeConfig(repository=repo, state_dir=state, admin_token_file=admin_token_file(state))
    server = EngineThread(config)
    exporter = InMemorySpanExporter()
    server.engine.tracer = tracing.make_tracer({}, exporter=exporter)
    try:
        yield server, exporter
    finally:
        server.stop()


def test_the_engine_span_is_a_child_of_the_callers_span(
    traced: tuple[EngineThread, InMemorySpanExporter],
) -> None:
    server, exporter = traced
    headers = {"traceparent": f"00-{TRACE}-{PARENT}-01", "tracestate": "vendor=x"}
    answer = httpx.post(f"{server.url}/v2/models/clf/infer", json=infer_body(), headers=headers)
    assert answer.status_code == 200, answer.text
    assert server.engine.tracer is not None
    server.engine.tracer.flush()
    spans = exporter.get_finished_spans()
    infer = next(s for s in spans if s.name == "infer")
    assert f"{infer.context.trace_id:032x}" == TRACE
    assert infer.parent is not None and f"{infer.parent.span_id:016x}" == PARENT
    assert infer.attributes is not None and infer.attributes["mlops.model"] == "clf"
    assert infer.attributes["mlops.request_id"] == answer.headers["x-request-id"]
    children = [
        s for s in spans if s.parent is not None and s.parent.span_id == infer.context.span_id
    ]
    assert {c.name for c in children} == STAGES
    assert all(c.context.trace_id == infer.context.trace_id for c in children)


@pytest.mark.parametrize(
    "traceparent",
    [None, "garbage", f"00-{'0' * 32}-{PARENT}-01", f"00-{TRACE}-{PARENT}-01" + "x" * 600],
)
def test_without_a_valid_traceparent_the_span_starts_a_trace(
    traced: tuple[EngineThread, InMemorySpanExporter], traceparent: str | None
) -> None:
    server, exporter = traced
    headers = {} if traceparent is None else {"traceparent": traceparent}
    answer = httpx.post(f"{server.url}/v2/models/clf/infer", json=infer_body(), headers=headers)
    assert answer.status_code == 200, answer.text
    assert server.engine.tracer is not None
    server.engine.tracer.flush()
    infer = next(s for s in exporter.get_finished_spans() if s.name == "infer")
    assert infer.parent is None and f"{infer.context.trace_id:032x}" != TRACE


def test_with_tracing_off_the_sdk_is_not_imported(repo: Path, tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from mlops.serving.app import Engine\n"
        "from mlops.serving.config import ServeConfig\n"
        f"config = ServeConfig(repository=Path({str(repo)!r}), state_dir=Path({str(tmp_path)!r}))\n"
        "e = Engine(config)\n"
        "assert e.tracer is None\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')], 'imported'\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    assert tracing.make_tracer({"OTEL_TRACES_EXPORTER": "none"}) is None
    assert tracing.make_tracer({}) is None


class Receiver:
    """An OTLP/HTTP trace receiver on a loopback port the kernel picks: it decodes each
    ExportTraceServiceRequest (protobuf) and keeps the spans with their resource."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        self.spans: list[tuple[dict[str, Any], Any]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                request = trace_service_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
                with outer.lock:
                    for rs in request.resource_spans:
                        resource = {a.key: a.value.string_value for a in rs.resource.attributes}
                        for ss in rs.scope_spans:
                            outer.spans.extend((resource, span) for span in ss.spans)
                reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
def test_a_serve_process_exports_joined_spans_over_otlp_http(tmp_path: Path) -> None:
    repo, state = tmp_path / "repo", tmp_path / "state"
    fixtures.write_version(
        repo, "m", "1.0.0", fixtures.classifier_bytes(), fixtures.classifier_settings()
    )
    receiver = Receiver()
    port = free_port()
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": "engine-under-test",
    }
    command = [*MLOPS, "serve", "--repository", str(repo), "--port", str(port)]
    command += ["--state-dir", str(state)]
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                if httpx.get(f"{url}/v2/health/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the engine did not become ready"
            time.sleep(0.1)
        parents = [f"{i + 1:016x}" for i in range(3)]
        for parent in parents:
            headers = {"traceparent": f"00-{TRACE}-{parent}-01"}
            answer = httpx.post(f"{url}/v2/models/m/infer", json=infer_body(), headers=headers)
            assert answer.status_code == 200, answer.text
        deadline = time.monotonic() + 60
        while True:
            with receiver.lock:
                got = [s for _, s in receiver.spans if s.name == "infer"]
            if len(got) >= 3:
                break
            assert time.monotonic() < deadline, f"spans received: {receiver.spans}"
            time.sleep(0.1)
        with receiver.lock:
            spans = list(receiver.spans)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        receiver.close()
    infers = [s for _, s in spans if s.name == "infer"]
    assert {s.trace_id.hex() for s in infers} == {TRACE}
    assert sorted(s.parent_span_id.hex() for s in infers) == parents
    for infer in infers:
        stages = {s.name for _, s in spans if s.parent_span_id == infer.span_id}
        assert stages == STAGES
    assert {resource["service.name"] for resource, _ in spans} == {"engine-under-test"}
