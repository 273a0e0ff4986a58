"""OpenTelemetry spans, only when the standard OTEL_* variables configure an exporter.

Without them `make_tracer` returns None and the request path pays one `is None` check: the
SDK is not even imported. OTLP export is the optional extra `pip install mlops[tracing]`
(opentelemetry-sdk and the OTLP/HTTP exporter); the console exporter needs only the SDK.

A request's span joins the caller's trace: the W3C `traceparent` (and `tracestate`) headers
of the request are read, when tracing is on, after the answer was sent, and the engine's
`infer` span (kind SERVER) becomes a child of the caller's span, with one child per stage
(decode, preprocess, inference, postprocess). Spans are built from the stamps the request
path takes anyway, so tracing adds no timing calls to it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

from mlops.serving.stats import STAGES

log = logging.getLogger("mlops.serving")

_ENV = ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_TRACE_HEADERS = {b"traceparent": "traceparent", b"tracestate": "tracestate"}
MAX_HEADER_BYTES = 512  # a valid traceparent is 55 bytes; tracestate is capped by the spec


class Tracer:
    def __init__(self, tracer: Any, provider: Any = None) -> None:
        from opentelemetry.trace import SpanKind
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._tracer = tracer
        self.provider = provider  # flushed by `shutdown`
        self._propagator = TraceContextTextMapPropagator()
        self._server = SpanKind.SERVER
        # perf_counter stamps are converted to the wall-clock nanoseconds spans need.
        self._offset_ns = time.time_ns() - time.perf_counter_ns()

    def record(
        self,
        model: str,
        version: str,
        request_id: str,
        code: int,
        stamps: list[float],
        headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        """One span per request with a child per stage; `stamps` are perf_counter seconds and
        `headers` the request's (its traceparent makes the span a child of the caller's)."""
        from opentelemetry import trace

        ns = [int(t * 1e9) + self._offset_ns for t in stamps]
        attributes = {
            "mlops.model": model,
            "mlops.version": version,
            "mlops.request_id": request_id,
            "http.status_code": code,
        }
        parent = self._propagator.extract(carrier=_carrier(headers))
        span = self._tracer.start_span(
            "infer", context=parent, kind=self._server, start_time=ns[0], attributes=attributes
        )
        context = trace.set_span_in_context(span)
        for stage, start, end in zip(STAGES, ns[1:], ns[2:], strict=False):
            child = self._tracer.start_span(stage, context=context, start_time=start)
            child.end(end_time=end)
        span.end(end_time=ns[-1])

    def flush(self) -> None:
        """Export what is buffered now."""
        if self.provider is not None:
            self.provider.force_flush()

    def shutdown(self) -> None:
        """Export what is still buffered (a worker's exit)."""
        if self.provider is not None:
            self.provider.shutdown()


def _carrier(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    carrier: dict[str, str] = {}
    for key, value in headers:
        name = _TRACE_HEADERS.get(key)
        if name is not None and len(value) <= MAX_HEADER_BYTES:
            carrier[name] = value.decode("latin-1")
    return carrier


def make_tracer(environ: Mapping[str, str] | None = None, exporter: Any = None) -> Tracer | None:
    """A tracer when the OTEL_* variables ask for one (or an `exporter` is given: tests),
    else None. An OTLP exporter that is not installed leaves tracing off with a log line."""
    env = os.environ if environ is None else environ
    exporter_name = env.get("OTEL_TRACES_EXPORTER", "")
    if exporter is None and (exporter_name == "none" or not any(env.get(k) for k in _ENV)):
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        log.warning("tracing is configured but opentelemetry-sdk is missing: pip install "
                    "'mlops[tracing]'")  # fmt: skip
        return None
    if exporter is None and exporter_name == "console":
        exporter = ConsoleSpanExporter()
    elif exporter is None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning("tracing is configured but the OTLP exporter is missing: pip install "
                        "'mlops[tracing]'")  # fmt: skip
            return None
        exporter = OTLPSpanExporter()
    service = env.get("OTEL_SERVICE_NAME", "mlops-engine")[:256]
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return Tracer(provider.get_tracer("mlops.serving"), provider)
