"""OpenTelemetry spans, only when the standard OTEL_* variables configure an exporter.

Without them `make_tracer` returns None and the request path pays one `is None` check: the
SDK is not even imported.
"""

from __future__ import annotations

import os
import time
from typing import Any

from mlops.serving.stats import STAGES

_ENV = ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


class Tracer:
    def __init__(self, tracer: Any) -> None:
        self._tracer = tracer
        # perf_counter stamps are converted to the wall-clock nanoseconds spans need.
        self._offset_ns = time.time_ns() - time.perf_counter_ns()

    def record(
        self, model: str, version: str, request_id: str, code: int, stamps: list[float]
    ) -> None:
        """One span per request with a child per stage; `stamps` are perf_counter seconds."""
        ns = [int(t * 1e9) + self._offset_ns for t in stamps]
        attributes = {
            "mlops.model": model,
            "mlops.version": version,
            "mlops.request_id": request_id,
            "http.status_code": code,
        }
        span = self._tracer.start_span("infer", start_time=ns[0], attributes=attributes)
        from opentelemetry import trace

        context = trace.set_span_in_context(span)
        for stage, start, end in zip(STAGES, ns[1:], ns[2:], strict=False):
            child = self._tracer.start_span(stage, context=context, start_time=start)
            child.end(end_time=end)
        span.end(end_time=ns[-1])


def make_tracer() -> Tracer | None:
    exporter_name = os.environ.get("OTEL_TRACES_EXPORTER", "")
    if exporter_name == "none" or not any(os.environ.get(k) for k in _ENV):
        return None
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    exporter: Any
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            return None  # no OTLP exporter installed: tracing stays off rather than failing
        exporter = OTLPSpanExporter()
    service = os.environ.get("OTEL_SERVICE_NAME", "mlops-engine")
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return Tracer(provider.get_tracer("mlops.serving"))
