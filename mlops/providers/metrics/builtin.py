"""Gate metrics without Prometheus: scrape every engine worker's /metrics directly.

The provider keeps a short in-memory series of counter snapshots and answers a window
question from the difference between the newest snapshot and one about a window older. The
executor keeps one instance per apply run and samples every interval, which is what makes
the series; `observe()` at the start of a hold gives the first sample a full window.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from mlops.providers.base import Sample, Traffic
from mlops.providers.engine import client as engine_client
from mlops.providers.metrics import series as metric_math
from mlops.spec import models as spec

Workers = dict[str, dict[metric_math.RouteKey, metric_math.VersionCounters]]  # url -> counters

# Samples of one round (several gates, two versions) share one scrape.
FRESH_S = 0.5
# A snapshot this close to a window's age is old enough to be its start (rounds jitter).
WINDOW_SLACK = 0.25
MAX_SNAPSHOTS = 2000


@dataclass(frozen=True)
class Snapshot:
    at: float
    workers: Workers


class BuiltinMetrics:
    def __init__(
        self,
        admin_urls: Callable[[], list[str]],
        *,
        clock: Callable[[], float] = time.monotonic,
        fetch: Callable[[str], str] | None = None,
    ) -> None:
        self._admin_urls = admin_urls
        self._clock = clock
        self._fetch = fetch or _fetch
        self._series: list[Snapshot] = []
        self._longest_window = 60.0
        self._lock = threading.Lock()

    def observe(self) -> str | None:
        """Take a snapshot now (if the last one is not fresh); returns an error text or None."""
        with self._lock:
            now = self._clock()
            if self._series and now - self._series[-1].at < FRESH_S:
                return None
            urls = self._admin_urls()
            if not urls:
                return "the engine is not running"
            workers: Workers = {}
            for url in urls:
                try:
                    workers[url] = metric_math.parse_routes(self._fetch(url))
                except (engine_client.EngineUnavailable, engine_client.EngineRejected) as exc:
                    return f"scraping {url}/metrics failed: {exc}"
                except ValueError as exc:
                    return f"{url}/metrics is not Prometheus text: {exc}"
            self._series.append(Snapshot(now, workers))
            self._prune(now)
            return None

    def sample(
        self,
        model: str,
        version: str,
        gate: spec.Gate,
        window_seconds: float,
        traffic: Traffic = "routed",
    ) -> Sample:
        """See `base.Metrics.sample`: only the requests of the `traffic` routes count, in the
        value and in `requests` (what `min_requests` compares)."""
        if gate.query is not None:
            return Sample(None, 0.0, error="query gates need Prometheus")
        self._longest_window = max(self._longest_window, window_seconds)
        error = self.observe()
        if error is not None:
            return Sample(None, 0.0, error=error)
        # Agreement exists only for mirrored requests, whichever traffic was asked for.
        routes = metric_math.ROUTES["shadow" if gate.metric == "shadow_agreement" else traffic]
        delta = self._increase([(model, version, route) for route in routes], window_seconds)
        if delta is None:
            return Sample(None, 0.0)  # one snapshot covers no time yet: inconclusive
        served = metric_math.served(delta)
        if gate.metric == "error_rate":
            return Sample(metric_math.error_rate(delta), served)
        if gate.metric in ("latency_p99", "latency_p50"):
            q = 0.99 if gate.metric == "latency_p99" else 0.50
            seconds = metric_math.quantile(q, delta.buckets)
            return Sample(None if seconds is None else seconds * 1000.0, served)
        if gate.metric == "shadow_agreement":
            return Sample(metric_math.agreement(delta), sum(delta.agree.values()))
        if gate.metric == "positive_rate":  # `requests` counts feedback outcomes here
            return Sample(metric_math.positive_rate(delta), delta.feedback.get("count", 0.0))
        return Sample(None, 0.0, error=f"unknown gate metric {gate.metric!r}")

    def _increase(
        self, keys: list[metric_math.RouteKey], window: float
    ) -> metric_math.VersionCounters | None:
        with self._lock:
            newest = self._series[-1]
            older = [
                s for s in self._series[:-1] if newest.at - s.at >= window * (1 - WINDOW_SLACK)
            ]
            start = older[-1] if older else (self._series[0] if len(self._series) > 1 else None)
        if start is None:
            return None
        per_worker = []
        for url, counters in newest.workers.items():
            for key in keys:
                now = counters.get(key)
                if now is not None:
                    # A worker (or series) new since `start` counts from zero, like a reset.
                    per_worker.append(now.minus(start.workers.get(url, {}).get(key)))
        return metric_math.total(per_worker)

    def _prune(self, now: float) -> None:
        keep_after = now - 2 * self._longest_window - 60.0
        while len(self._series) > 2 and (
            self._series[1].at < keep_after or len(self._series) > MAX_SNAPSHOTS
        ):
            self._series.pop(0)


def _fetch(url: str) -> str:
    with engine_client.AdminClient(url, timeout=5.0) as admin:
        return admin.metrics_text()
