"""Window arithmetic of the built-in scraper on exposition text (pure, no processes)."""

from __future__ import annotations

import math

import pytest

from mlops.providers.base import Sample
from mlops.providers.metrics import builtin as builtin_metrics
from mlops.providers.metrics import series as metric_math
from mlops.spec import models as spec

ERR = spec.Gate(metric="error_rate", max=0.01)
P99 = spec.Gate(metric="latency_p99", max_increase=0.2)


def text(ok: int, failed: int, bad: int, fast: int, slow: int) -> str:
    """Exposition of one worker for clf@1.0.0: `fast` requests under 5 ms, `slow` under 50 ms."""
    return f"""# TYPE mlops_requests counter
mlops_requests_total{{model="clf",version="1.0.0",code="200"}} {ok}
mlops_requests_total{{model="clf",version="1.0.0",code="500"}} {failed}
mlops_requests_total{{model="clf",version="1.0.0",code="400"}} {bad}
# TYPE mlops_request_duration_seconds histogram
mlops_request_duration_seconds_bucket{{le="0.005",model="clf",version="1.0.0"}} {fast}
mlops_request_duration_seconds_bucket{{le="0.05",model="clf",version="1.0.0"}} {fast + slow}
mlops_request_duration_seconds_bucket{{le="+Inf",model="clf",version="1.0.0"}} {fast + slow}
mlops_request_duration_seconds_count{{model="clf",version="1.0.0"}} {fast + slow}
mlops_request_duration_seconds_sum{{model="clf",version="1.0.0"}} 1.0
"""


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_parse_and_shares() -> None:
    counters = metric_math.parse(text(90, 10, 5, 80, 20))[("clf", "1.0.0")]
    assert metric_math.served(counters) == 100
    assert metric_math.error_rate(counters) == pytest.approx(0.1)
    assert metric_math.error_rate(metric_math.VersionCounters()) is None


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.5, {0.005: 80, 0.05: 100, math.inf: 100}, 0.003125),  # inside the first bucket
        (0.99, {0.005: 80, 0.05: 100, math.inf: 100}, 0.005 + 0.045 * 19 / 20),
        (0.99, {0.005: 0, 0.05: 0, math.inf: 10}, 0.05),  # above every finite bucket
        (0.5, {0.005: 0, math.inf: 0}, None),
        (0.5, {0.005: 3}, None),  # no +Inf bucket: not a histogram
    ],
)
def test_quantile_like_prometheus(
    q: float, buckets: dict[float, float], expected: float | None
) -> None:
    got = metric_math.quantile(q, buckets)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_window_deltas_resets_and_workers() -> None:
    clock = Clock()
    pages = {"a": text(100, 0, 0, 100, 0), "b": text(50, 0, 0, 50, 0)}
    urls = ["a", "b"]
    metrics = builtin_metrics.BuiltinMetrics(lambda: urls, clock=clock, fetch=pages.__getitem__)
    assert metrics.sample("clf", "1.0.0", ERR, 10) == Sample(None, 0)  # one snapshot: no span
    clock.now += 10
    # Worker a served 20 more with 2 failures; worker b restarted (its counters reset to 8).
    pages.update(a=text(118, 2, 7, 118, 2), b=text(8, 0, 0, 4, 4))
    assert metrics.sample("clf", "1.0.0", ERR, 10) == Sample(2 / 28, 28)
    p99 = metrics.sample("clf", "1.0.0", P99, 10)
    # Deltas: 22 fast (18 from a, 4 from b) and 6 slow out of 28 requests.
    seconds = metric_math.quantile(0.99, {0.005: 22, 0.05: 28, math.inf: 28})
    assert seconds is not None
    assert p99.value == pytest.approx(1000 * seconds)
    clock.now += 0.1  # within one round: the same scrape is reused
    pages["a"] = text(1000, 0, 0, 1000, 0)
    assert metrics.sample("clf", "1.0.0", ERR, 10).requests == 28
    clock.now += 10
    urls.append("c")  # a new worker counts from zero
    pages["c"] = text(5, 5, 0, 5, 5)
    got = metrics.sample("clf", "1.0.0", ERR, 10)
    assert got.requests == (1000 - 118) + 0 + 10
    assert metrics.sample("clf", "1.0.0", ERR, 20).requests == (1000 - 100) + (8 + 0) + 10


def test_unparseable_page_is_an_error() -> None:
    metrics = builtin_metrics.BuiltinMetrics(lambda: ["a"], fetch=lambda url: "garbage{ 1 2 3")
    assert "not Prometheus text" in (metrics.sample("clf", "1.0.0", ERR, 10).error or "")
