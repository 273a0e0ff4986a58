"""PromQL templates for the named gate metrics (pure string building).

Counts over a window are `now - (now offset W)` per series, not `increase()`: a canary's
series are new, and `increase()` ignores everything a series counted before its first scrape
(a canary failing from its first request would look clean). A series absent W ago counts from
zero, and one that went down (a worker restarted) counts from its reset, as increase() would.
Latencies use `histogram_quantile` over the same bucket deltas, in milliseconds.

Request counts and latencies select the `route` label by the traffic judged: `routed` for a
canary and its stable version (direct calls to /versions/V/infer never count), `routed` or
`shadow` for a shadow during its hold (see `metric_math.ROUTES`).

`dialect="triton"` compiles the same gates to NVIDIA Triton's own metrics, whose `version`
label is Triton's integer version (the caller maps the semver): `nv_inference_request_success`
and `nv_inference_request_failure` for counts and error rate, the
`nv_inference_first_response_histogram_ms` histogram (Triton 24.08+ with
`--metrics-config=histogram_latencies=true`) for latency quantiles, already in milliseconds.
Triton cannot tell routed from direct or mirrored requests, nor compare a shadow's answers, nor
see client feedback: those gates are `Unanswerable` (docs/kubernetes.md).
"""

from __future__ import annotations

import json
import math
from typing import Literal

from mlops.spec import models as spec

# Kept equal to metric_math.ROUTES (this module is pure text and imports nothing it need not).
_ROUTES = {"routed": 'route="routed"', "shadow": 'route=~"shadow|routed"'}

_QUANTILES = {"latency_p99": 0.99, "latency_p50": 0.50}

Dialect = Literal["mlops", "triton"]
TRITON_SUCCESS = "nv_inference_request_success"
TRITON_FAILURE = "nv_inference_request_failure"
TRITON_DURATION_US = "nv_inference_request_duration_us"  # cumulative: a mean, not a quantile
TRITON_LATENCY_HISTOGRAM = "nv_inference_first_response_histogram_ms"


class Unanswerable(ValueError):
    """The serving engine does not export what this gate needs (a one-line reason)."""


def triton_mean_latency_ms(model: str, version: str, window_: str) -> str:
    """Mean request latency from Triton's cumulative counters (what every Triton exports)."""
    sel = selector(model, version)
    total = increase(TRITON_DURATION_US, sel, window_)
    return f"({total}) / ({_triton_served(model, version, window_)}) / 1000"


def _triton_served(model: str, version: str, window_: str) -> str:
    sel = selector(model, version)
    failed = increase(TRITON_FAILURE, sel, window_)
    return f"{increase(TRITON_SUCCESS, sel, window_)} + ({failed} or vector(0))"


def _triton_unanswerable(gate: spec.Gate) -> None:
    if gate.metric == "shadow_agreement":
        raise Unanswerable(
            "Triton does not compare a shadow's answers: shadow_agreement needs engine: mlops"
        )
    if gate.metric == "positive_rate":
        raise Unanswerable("Triton does not take feedback: positive_rate needs engine: mlops")


def window(seconds: float, scrape_interval: float) -> str:
    """A window length: at least three scrapes, so that both ends hold a scraped value."""
    return f"{math.ceil(max(seconds, 3 * scrape_interval))}s"


def selector(model: str, version: str, extra: str = "") -> str:
    # json.dumps quotes and escapes like a PromQL double-quoted string for these names.
    labels = f"model={json.dumps(model)},version={json.dumps(version)}"
    return "{" + labels + (f",{extra}" if extra else "") + "}"


def delta(metric: str, sel: str, window_: str, by: str = "") -> str:
    series = f"{metric}{sel}"
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping}((({series} - {series} offset {window_}) >= 0) or {series})"


def increase(metric: str, sel: str, window_: str) -> str:
    return delta(metric, sel, window_)


def route(traffic: str) -> str:
    """The `route` matcher for the traffic a gate judges."""
    return _ROUTES[traffic]


def served(model: str, version: str, window_: str, traffic: str = "routed") -> str:
    """Requests the version had to serve: input errors (4xx) are the client's, not the model's."""
    sel = selector(model, version, f'code!~"4..",{route(traffic)}')
    return increase("mlops_requests_total", sel, window_)


def request_count(
    gate: spec.Gate,
    model: str,
    version: str,
    window_: str,
    traffic: str = "routed",
    dialect: Dialect = "mlops",
) -> str:
    """What `min_requests` counts: shadow comparisons for shadow_agreement, else served requests."""
    if dialect == "triton" and gate.query is None:
        _triton_unanswerable(gate)
        return _triton_served(model, version, window_)
    if gate.metric == "shadow_agreement":
        return increase("mlops_shadow_agreement_total", selector(model, version), window_)
    if gate.metric == "positive_rate":  # feedback outcomes reported for the version
        return increase("mlops_feedback_total", selector(model, version), window_)
    return served(model, version, window_, traffic)


def gate_query(
    gate: spec.Gate,
    model: str,
    version: str,
    window_: str,
    traffic: str = "routed",
    dialect: Dialect = "mlops",
) -> str:
    if gate.query is not None:
        return gate.query  # the user's PromQL, as written
    if dialect == "triton":
        return _triton_query(gate, model, version, window_)
    if gate.metric == "error_rate":
        sel = selector(model, version, f'code=~"5..",{route(traffic)}')
        failed = increase("mlops_requests_total", sel, window_)
        # `or vector(0)`: no 5xx series at all means a rate of 0, not "no data".
        return f"({failed} or vector(0)) / {served(model, version, window_, traffic)}"
    if gate.metric in _QUANTILES:
        sel = selector(model, version, route(traffic))
        buckets = delta("mlops_request_duration_seconds_bucket", sel, window_, by="le")
        return f"histogram_quantile({_QUANTILES[gate.metric]}, {buckets}) * 1000"
    if gate.metric == "shadow_agreement":
        metric = "mlops_shadow_agreement_total"
        agreed = increase(metric, selector(model, version, 'agree="true"'), window_)
        compared = increase(metric, selector(model, version), window_)
        return f"({agreed} or vector(0)) / {compared}"
    if gate.metric == "positive_rate":  # mean feedback value: 1 positive, 0 negative
        values = increase("mlops_feedback_value_total", selector(model, version), window_)
        outcomes = increase("mlops_feedback_total", selector(model, version), window_)
        return f"({values}) / {outcomes}"
    raise ValueError(f"no PromQL template for gate metric {gate.metric!r}")


def _triton_query(gate: spec.Gate, model: str, version: str, window_: str) -> str:
    """A named gate over Triton's metrics (every request counts: Triton has no route label)."""
    _triton_unanswerable(gate)
    sel = selector(model, version)
    if gate.metric == "error_rate":
        failed = increase(TRITON_FAILURE, sel, window_)
        return f"({failed} or vector(0)) / ({_triton_served(model, version, window_)})"
    if gate.metric in _QUANTILES:
        buckets = delta(f"{TRITON_LATENCY_HISTOGRAM}_bucket", sel, window_, by="le")
        return f"histogram_quantile({_QUANTILES[gate.metric]}, {buckets})"
    raise Unanswerable(f"no Triton metric answers gate metric {gate.metric!r}")
