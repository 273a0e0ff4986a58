"""Counter snapshots of the engine's /metrics and the window arithmetic on them (pure).

The built-in metrics provider keeps snapshots over time and computes what PromQL's
`increase()` and `histogram_quantile()` would: deltas per worker (a worker restart resets its
counters, so a drop counts as a reset, as in Prometheus), summed over workers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

Key = tuple[str, str]  # (model, version)
K = TypeVar("K", str, float)


@dataclass
class VersionCounters:
    """Cumulative counters of one version on one worker."""

    codes: dict[str, float] = field(default_factory=dict)  # HTTP code -> requests
    buckets: dict[float, float] = field(default_factory=dict)  # le (seconds) -> cumulative count
    agree: dict[str, float] = field(default_factory=dict)  # "true"/"false" -> comparisons

    def minus(self, before: VersionCounters | None) -> VersionCounters:
        """Increase since `before`; a counter that went down was reset and counts from zero."""
        if before is None:
            return self
        return VersionCounters(
            _delta(self.codes, before.codes),
            _delta(self.buckets, before.buckets),
            _delta(self.agree, before.agree),
        )

    def add(self, other: VersionCounters) -> None:
        _accumulate(self.codes, other.codes)
        _accumulate(self.buckets, other.buckets)
        _accumulate(self.agree, other.agree)


def _delta(now: Mapping[K, float], before: Mapping[K, float]) -> dict[K, float]:
    out: dict[K, float] = {}
    for k, v in now.items():
        old = before.get(k, 0.0)
        out[k] = v - old if v >= old else v
    return out


def _accumulate(into: dict[K, float], more: Mapping[K, float]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0.0) + v


def parse(text: str) -> dict[Key, VersionCounters]:
    """The counters the gates need, from one worker's Prometheus exposition text."""
    from prometheus_client.parser import text_string_to_metric_families

    found: defaultdict[Key, VersionCounters] = defaultdict(VersionCounters)
    for family in text_string_to_metric_families(text):
        # Matched by sample name: the family name depends on how the TYPE line was written.
        if not family.name.startswith(
            ("mlops_requests", "mlops_request_duration", "mlops_shadow_a")
        ):
            continue
        for s in family.samples:
            key = (s.labels.get("model", ""), s.labels.get("version", ""))
            if s.name == "mlops_requests_total":
                found[key].codes[s.labels.get("code", "")] = s.value
            elif s.name == "mlops_request_duration_seconds_bucket":
                found[key].buckets[float(s.labels["le"])] = s.value
            elif s.name == "mlops_shadow_agreement_total":
                found[key].agree[s.labels.get("agree", "")] = s.value
    return dict(found)


def served(c: VersionCounters) -> float:
    """Requests the version actually had to serve: input errors (4xx) are the client's."""
    return sum(v for code, v in c.codes.items() if not code.startswith("4"))


def error_rate(c: VersionCounters) -> float | None:
    total = served(c)
    if total <= 0:
        return None
    return sum(v for code, v in c.codes.items() if code.startswith("5")) / total


def agreement(c: VersionCounters) -> float | None:
    total = sum(c.agree.values())
    if total <= 0:
        return None
    return c.agree.get("true", 0.0) / total


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative buckets (le -> count), in the buckets'
    unit: linear interpolation inside the bucket holding the rank."""
    ordered = sorted(buckets.items())
    if not ordered or not math.isinf(ordered[-1][0]):
        return None
    total = ordered[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if math.isinf(le):
                # Above the highest finite bucket: Prometheus answers with that bound.
                return lower_bound
            if count == lower_count:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = le, count
    return lower_bound


def total(counters: Iterable[VersionCounters]) -> VersionCounters:
    summed = VersionCounters()
    for c in counters:
        summed.add(c)
    return summed
