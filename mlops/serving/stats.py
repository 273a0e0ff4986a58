"""Hot-path counters: plain Python numbers updated on the event loop thread.

prometheus_client's own Histogram takes a lock and walks every bucket per observation; these
do one bisect and one increment, and `metrics.py` turns them into Prometheus families only
when /metrics is scraped. Only the event loop thread writes them, so no lock is needed.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict

# Seconds; dense below 10 ms because that is where a small model's p99 lives.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05,
    0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
STAGES: tuple[str, ...] = ("decode", "preprocess", "inference", "postprocess")


class Histogram:
    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)  # last slot is +Inf
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds


class VersionStats:
    """Everything counted for one model version; survives unload so counters stay monotonic."""

    __slots__ = (
        "agreement",
        "batched_requests",
        "batches",
        "duration",
        "feedback",
        "feedback_value",
        "requests",
        "shadow",
        "stages",
    )

    def __init__(self) -> None:
        self.requests: defaultdict[str, int] = defaultdict(int)  # HTTP code -> count
        self.duration = Histogram()
        self.stages = tuple(Histogram() for _ in STAGES)
        self.shadow: defaultdict[str, int] = defaultdict(int)  # code -> mirrored requests
        self.agreement = {"true": 0, "false": 0}
        self.feedback = 0
        self.feedback_value = 0.0
        # Runs of the model and the requests they carried: their ratio proves merging.
        self.batches = 0
        self.batched_requests = 0


class StatsBook:
    """VersionStats by (model, version), created on first use."""

    def __init__(self) -> None:
        self.versions: dict[tuple[str, str], VersionStats] = {}

    def get(self, model: str, version: str) -> VersionStats:
        key = (model, version)
        stats = self.versions.get(key)
        if stats is None:
            stats = self.versions[key] = VersionStats()
        return stats
