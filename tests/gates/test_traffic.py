"""Which requests a gate judges: a canary on what the router sent it, a shadow on the mirrored
requests it ran, never on direct calls (issue 9 #2, issue 10 shadow gates).

The whole gate path runs here on a virtual clock: engine exposition text (as a worker's
/metrics writes it, `route` label included) -> the built-in scraper's window arithmetic ->
the checkpoint hold's decision. Only the clock and the page source are scripted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pytest

from mlops.apply import checkpoints, hooks
from mlops.gates import evaluate as gates
from mlops.providers.base import Sample
from mlops.providers.metrics import builtin as builtin_metrics
from mlops.providers.metrics import promql
from mlops.spec import models as spec

FAST, SLOW = 0.005, 0.05  # seconds: the bucket each stream's requests land in


@dataclass(frozen=True)
class Stream:
    """Requests per second of one (version, route), how many of them fail, and their latency."""

    ok: float
    failed: float = 0.0
    latency: float = FAST


def page(streams: Mapping[tuple[str, str], Stream], t: float) -> str:
    """One worker's exposition after `t` seconds of steady traffic."""
    lines = ["# TYPE mlops_requests counter", "# TYPE mlops_request_duration_seconds histogram"]
    for (version, route), s in streams.items():
        labels = f'model="m",version="{version}",route="{route}"'
        ok, failed = s.ok * t, s.failed * t
        lines.append(f'mlops_requests_total{{{labels},code="200"}} {ok}')
        lines.append(f'mlops_requests_total{{{labels},code="500"}} {failed}')
        for le in (FAST, SLOW, "+Inf"):
            within = ok if le == "+Inf" or float(le) >= s.latency else 0.0
            lines.append(f'mlops_request_duration_seconds_bucket{{{labels},le="{le}"}} {within}')
    return "\n".join(lines) + "\n"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def hold(
    streams: Mapping[tuple[str, str], Stream],
    *,
    shadow: bool,
    gates_: list[dict[str, object]] | None = None,
    min_requests: int = 100,
) -> checkpoints.HoldResult:
    clock = Clock()
    start = clock.now
    metrics = builtin_metrics.BuiltinMetrics(
        lambda: ["w0"], clock=clock, fetch=lambda url: page(streams, clock.now - start + 60)
    )
    after = {
        "stable": "1.0.0",
        "canary": "1.1.0",
        "weight": 0 if shadow else 10,
        "hold": 10.0,
        "interval": 2.0,
        "min_requests": min_requests,
        "consecutive_errors": 3,
        "gates": gates_
        or [{"metric": "error_rate", "max": 0.001}, {"metric": "latency_p99", "max_increase": 0.2}],
        "shadow": shadow,
    }
    point = checkpoints.Checkpoint.from_action("m/05-checkpoint_gate-0", "m", after)
    return checkpoints.hold(point, metrics, hooks.Hook(), clock=clock, sleep=clock.sleep)


STABLE = {("1.0.0", "routed"): Stream(ok=180.0)}


def test_a_direct_flood_cannot_dilute_an_erroring_canary() -> None:
    # The router sends the canary 20 req/s of which 5% fail; a client sends it 5,000 clean
    # req/s directly. Judged on everything the error rate would be 0.02%: under the gate.
    streams = {
        **STABLE,
        ("1.1.0", "routed"): Stream(ok=19.0, failed=1.0),
        ("1.1.0", "direct"): Stream(ok=5000.0),
    }
    result = hold(streams, shadow=False, min_requests=10)
    assert result.decision is gates.Decision.ROLLBACK
    error_rate = result.measurements[0]
    assert error_rate.value == pytest.approx(0.05)
    assert error_rate.requests == pytest.approx(40.0)  # 2 s of routed requests only


def test_direct_traffic_alone_never_promotes() -> None:
    streams = {**STABLE, ("1.1.0", "direct"): Stream(ok=5000.0)}
    result = hold(streams, shadow=False)
    assert result.decision is gates.Decision.PAUSE
    assert "0 requests in the window, need 100" in result.reason


def test_a_healthy_shadow_is_judged_on_its_mirrored_requests_and_promotes() -> None:
    streams = {**STABLE, ("1.1.0", "shadow"): Stream(ok=180.0)}
    result = hold(streams, shadow=True)
    assert result.decision is gates.Decision.PROMOTE, result.reason
    assert {m.traffic for m in result.measurements} == {"shadow"}
    assert all(m.requests == pytest.approx(360.0) for m in result.measurements)


@pytest.mark.parametrize(
    ("shadow", "gate"),
    [
        (Stream(ok=171.0, failed=9.0), "error_rate"),
        (Stream(ok=180.0, latency=SLOW), "latency_p99"),
    ],
)
def test_an_erroring_or_slow_shadow_rolls_back_in_the_shadow_phase(
    shadow: Stream, gate: str
) -> None:
    result = hold({**STABLE, ("1.1.0", "shadow"): shadow}, shadow=True)
    assert result.decision is gates.Decision.ROLLBACK
    assert result.reason.startswith(f"gate failed in the shadow phase (mirrored requests): {gate}")


def test_a_shadow_without_mirrored_requests_pauses_saying_so() -> None:
    result = hold({**STABLE, ("1.1.0", "direct"): Stream(ok=500.0)}, shadow=True)
    assert result.decision is gates.Decision.PAUSE
    assert "0 mirrored requests in the window, need 100" in result.reason


def test_a_gateway_mirror_counted_as_routed_by_the_shadow_also_counts() -> None:
    # Behind a gateway the copies reach the shadow's own pods as ordinary requests.
    result = hold({**STABLE, ("1.1.0", "routed"): Stream(ok=180.0)}, shadow=True)
    assert result.decision is gates.Decision.PROMOTE, result.reason


def test_engines_without_a_route_label_count_as_routed() -> None:
    text = page({("1.1.0", "routed"): Stream(ok=1.0)}, 10).replace(',route="routed"', "")
    clock = Clock()
    pages = iter([text, text.replace("} 10.0", "} 30.0")])
    metrics = builtin_metrics.BuiltinMetrics(
        lambda: ["w"], clock=clock, fetch=lambda u: next(pages)
    )
    assert metrics.observe() is None
    clock.now += 10
    err = spec.Gate(metric="error_rate", max=0.01)
    assert metrics.sample("m", "1.1.0", err, 10) == Sample(0.0, 20.0)


def test_measurement_records_the_traffic_it_judged() -> None:
    err = spec.Gate(metric="error_rate", max=0.01)
    shadow = gates.evaluate(err, Sample(0.0, 3.0), None, 10, "shadow")
    assert shadow.traffic == "shadow" and shadow.to_dict()["traffic"] == "shadow"
    assert shadow.detail == "3 mirrored requests in the window, need 10"
    routed = gates.evaluate(err, Sample(0.0, 3.0), None, 10)
    assert routed.traffic == "routed" and routed.detail == "3 requests in the window, need 10"


def test_promql_selects_the_route_by_traffic() -> None:
    err = spec.Gate(metric="error_rate", max=0.01)
    p99 = spec.Gate(metric="latency_p99", max_increase=0.2)
    agree = spec.Gate(metric="shadow_agreement", min=0.9)
    routed = promql.gate_query(err, "m", "1.1.0", "10s")
    # Every series in the query is selected by route (each delta names its series 3 times).
    assert routed.count("mlops_requests_total{") == routed.count('route="routed"') == 6
    shadow = promql.gate_query(p99, "m", "1.1.0", "10s", "shadow")
    assert 'route=~"shadow|routed"' in shadow
    assert 'route="routed"' in promql.request_count(err, "m", "1.1.0", "10s")
    assert "route" not in promql.gate_query(agree, "m", "1.1.0", "10s", "shadow")
