"""Hot-path counters: plain Python numbers updated on the event loop thread.

prometheus_client's own Histogram takes a lock and walks every bucket per observation; these
do one bisect and one increment, and `metrics.py` turns them into Prometheus families only
when /metrics is scraped. Only the event loop thread writes them, so no lock is needed.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections import defaultdict

# Seconds; dense below 10 ms because that is where a small model's p99 lives.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05,
    0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
STAGES: tuple[str, ...] = ("decode", "preprocess", "inference", "postprocess")
# How a request reached a version (the `route` label): picked by the weighted router, sent to
# /versions/V/infer by the client, or mirrored by the engine during a shadow phase. Gates judge
# `routed` (and `shadow` during a shadow hold), so direct traffic cannot dilute a canary.
ROUTES: tuple[str, ...] = ("routed", "direct", "shadow")
RATE_WINDOW_SECONDS = 60.0  # time constant of the request-rate average


class Histogram:
    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)  # last slot is +Inf
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds


class RouteStats:
    """Requests of one version that arrived one way: counts by HTTP code and their latency."""

    __slots__ = ("duration", "requests")

    def __init__(self) -> None:
        self.requests: defaultdict[str, int] = defaultdict(int)  # HTTP code -> count
        self.duration = Histogram()  # successful requests only


class VersionStats:
    """Everything counted for one model version; survives unload so counters stay monotonic."""

    __slots__ = (
        "agreement",
        "batched_requests",
        "batches",
        "direct",
        "failed_seconds",
        "feedback",
        "feedback_value",
        "inferences",
        "last_at",
        "mirrored",
        "queued_seconds",
        "routed",
        "stages",
    )

    def __init__(self) -> None:
        self.routed = RouteStats()
        self.direct = RouteStats()
        # Requests the engine mirrored to this version as a shadow: they are run and compared,
        # never answered. Their duration is what the request would have taken had this version
        # answered it (see shadow.py).
        self.mirrored = RouteStats()
        self.stages = tuple(Histogram() for _ in STAGES)
        self.agreement = {"true": 0, "false": 0}
        self.feedback = 0
        self.feedback_value = 0.0
        # Runs of the model and the requests they carried: their ratio proves merging.
        self.batches = 0
        self.batched_requests = 0
        # For Triton's statistics extension (triton_compat.py): rows answered (Triton counts
        # each row of a batch as one inference), the perf_counter stamp of the last answer
        # (0.0: none yet), time failed client requests took, and time requests waited in the
        # batcher's queue (part of the `inference` stage, which starts at submission).
        self.inferences = 0
        self.last_at = 0.0
        self.failed_seconds = 0.0
        self.queued_seconds = 0.0

    @property
    def by_route(self) -> tuple[tuple[str, RouteStats], ...]:
        return (("routed", self.routed), ("direct", self.direct), ("shadow", self.mirrored))

    # Names from before the route split, kept for callers that read them.
    @property
    def requests(self) -> defaultdict[str, int]:
        """Routed requests by HTTP code."""
        return self.routed.requests

    @property
    def duration(self) -> Histogram:
        """Latency of successful routed requests."""
        return self.routed.duration

    @property
    def shadow(self) -> defaultdict[str, int]:
        """Mirrored requests by code (also exported as `mlops_shadow_requests_total`)."""
        return self.mirrored.requests


class RateMeter:
    """Requests per second of one model, exponentially weighted over RATE_WINDOW_SECONDS.

    It is advanced from the request counters when read, so requests pay nothing for it. Each
    step weighs the mean rate since the previous read by 1 - exp(-dt / window), the usual
    average for irregular intervals: read every few seconds (a Prometheus scrape) it is a
    one-minute average; read after a long silence it is the mean rate over that gap. Reads
    close together are fine: as dt shrinks the step tends to requests / window, so the
    requests in between always count and nothing is divided by a tiny interval.
    """

    __slots__ = ("at", "count", "rate")

    def __init__(self, count: int, at: float) -> None:
        self.rate, self.count, self.at = 0.0, count, at

    def advance(self, count: int, now: float) -> float:
        elapsed = now - self.at
        if elapsed > 0:
            weight = -math.expm1(-elapsed / RATE_WINDOW_SECONDS)  # 1 - exp(-dt/window)
            arrived = max(count - self.count, 0)
            # weight * (arrived / elapsed), written so a tiny elapsed cannot blow up.
            per_second = weight / elapsed if weight > 0 else 1.0 / RATE_WINDOW_SECONDS
            self.rate = self.rate * (1.0 - weight) + arrived * per_second
            self.count, self.at = count, now
        return self.rate


class StatsBook:
    """VersionStats by (model, version), created on first use."""

    def __init__(self) -> None:
        self.versions: dict[tuple[str, str], VersionStats] = {}
        self.started = time.monotonic()
        self._rates: dict[str, RateMeter] = {}

    def request_rates(self, now: float | None = None) -> dict[str, float]:
        """model -> requests/s (every status code, every version), advancing each meter.

        Client requests only (routed and direct): mirrored copies are not traffic."""
        totals: defaultdict[str, int] = defaultdict(int)
        for (model, _), stats in self.versions.items():
            totals[model] += sum(stats.routed.requests.values()) + sum(
                stats.direct.requests.values()
            )
        now = time.monotonic() if now is None else now
        rates: dict[str, float] = {}
        for model, total in totals.items():
            meter = self._rates.get(model)
            if meter is None:
                # Counting starts with the worker: the first read averages since then.
                meter = self._rates[model] = RateMeter(0, self.started)
            rates[model] = meter.advance(total, now)
        return rates

    def get(self, model: str, version: str) -> VersionStats:
        key = (model, version)
        stats = self.versions.get(key)
        if stats is None:
            stats = self.versions[key] = VersionStats()
        return stats
