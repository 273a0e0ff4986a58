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
RouteKey = tuple[str, str, str]  # (model, version, route)
K = TypeVar("K", str, float)

# The `route` label values a gate reads, by the traffic it judges. A canary or stable version
# is judged on what the router sent it, never on direct calls. A shadow is judged on what it
# ran as a shadow: the engine's mirrored copies, or (behind a gateway that mirrors) copies its
# own pods received as routed requests; it has no weight during the hold, so nothing else is.
ROUTES: dict[str, tuple[str, ...]] = {"routed": ("routed",), "shadow": ("shadow", "routed")}


@dataclass
class VersionCounters:
    """Cumulative counters of one version on one worker."""

    codes: dict[str, float] = field(default_factory=dict)  # HTTP code -> requests
    buckets: dict[float, float] = field(default_factory=dict)  # le (seconds) -> cumulative count
    agree: dict[str, float] = field(default_factory=dict)  # "true"/"false" -> comparisons
    # /v2/feedback outcomes: "count" -> outcomes reported, "value" -> sum of their values.
    feedback: dict[str, float] = field(default_factory=dict)

    def minus(self, before: VersionCounters | None) -> VersionCounters:
        """Increase since `before`; a counter that went down was reset and counts from zero."""
        if before is None:
            return self
        return VersionCounters(
            _delta(self.codes, before.codes),
            _delta(self.buckets, before.buckets),
            _delta(self.agree, before.agree),
            _delta(self.feedback, before.feedback),
        )

    def add(self, other: VersionCounters) -> None:
        _accumulate(self.codes, other.codes)
        _accumulate(self.buckets, other.buckets)
        _accumulate(self.agree, other.agree)
        _accumulate(self.feedback, other.feedback)


def _delta(now: Mapping[K, float], before: Mapping[K, float]) -> dict[K, float]:
    out: dict[K, float] = {}
    for k, v in now.items():
        old = before.get(k, 0.0)
        out[k] = v - old if v >= old else v
    return out


def _accumulate(into: dict[K, float], more: Mapping[K, float]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0.0) + v


_FEEDBACK = {"mlops_feedback_total": "count", "mlops_feedback_value_total": "value"}


def parse_routes(text: str) -> dict[RouteKey, VersionCounters]:
    """The counters the gates need, per route, from one worker's Prometheus exposition text.

    Request samples without a `route` label (an engine from before it) count as routed;
    agreement counters come from mirrored requests only, so they are the shadow route's."""
    from prometheus_client.parser import text_string_to_metric_families

    found: defaultdict[RouteKey, VersionCounters] = defaultdict(VersionCounters)
    for family in text_string_to_metric_families(text):
        # Matched by sample name: the family name depends on how the TYPE line was written.
        if not family.name.startswith(
            ("mlops_requests", "mlops_request_duration", "mlops_shadow_a", "mlops_feedback")
        ):
            continue
        for s in family.samples:
            model, version = s.labels.get("model", ""), s.labels.get("version", "")
            route = s.labels.get("route") or "routed"
            if s.name == "mlops_requests_total":
                found[model, version, route].codes[s.labels.get("code", "")] = s.value
            elif s.name == "mlops_request_duration_seconds_bucket":
                found[model, version, route].buckets[float(s.labels["le"])] = s.value
            elif s.name == "mlops_shadow_agreement_total":
                found[model, version, "shadow"].agree[s.labels.get("agree", "")] = s.value
            elif s.name in _FEEDBACK:
                # Outcomes are the version's, whichever way it served: kept with routed.
                found[model, version, "routed"].feedback[_FEEDBACK[s.name]] = s.value
    return dict(found)


def parse(text: str) -> dict[Key, VersionCounters]:
    """Like `parse_routes`, summed over routes: every request each version ran."""
    summed: defaultdict[Key, VersionCounters] = defaultdict(VersionCounters)
    for (model, version, _), counters in parse_routes(text).items():
        summed[model, version].add(counters)
    return dict(summed)


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


def positive_rate(c: VersionCounters) -> float | None:
    """The mean reported feedback value: the positive rate for 1 (positive) / 0 outcomes."""
    count = c.feedback.get("count", 0.0)
    if count <= 0:
        return None
    return c.feedback.get("value", 0.0) / count


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
