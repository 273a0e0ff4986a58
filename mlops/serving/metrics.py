"""Prometheus exposition of the hot-path counters, built only when /metrics is scraped."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from mlops.serving import sampling
from mlops.serving.stats import LATENCY_BUCKETS, STAGES, Histogram, StatsBook

_LE = [*(repr(b) for b in LATENCY_BUCKETS), "+Inf"]


class EngineCollector(Collector):
    def __init__(
        self,
        book: StatsBook,
        queue_depths: Callable[[], dict[tuple[str, str], int]],
        generation: Callable[[], int],
        drift: Callable[[], dict[sampling.Key, list[sampling.FeatureDrift]]] | None = None,
    ) -> None:
        self._book = book
        self._queue_depths = queue_depths
        self._generation = generation
        self._drift = drift

    def collect(self) -> Iterator[Metric]:
        mv = ["model", "version"]
        requests = CounterMetricFamily(
            "mlops_requests",
            "Inference requests by HTTP status code and route (routed, direct or shadow).",
            labels=[*mv, "code", "route"],
        )
        duration = HistogramMetricFamily(
            "mlops_request_duration_seconds",
            "Inference request latency by route (routed, direct or shadow).",
            labels=[*mv, "route"],
        )
        stages = HistogramMetricFamily(
            "mlops_stage_duration_seconds",
            "Time per request stage: decode, preprocess, inference (queue + run), postprocess.",
            labels=[*mv, "stage"],
        )
        shadow = CounterMetricFamily(
            "mlops_shadow_requests", "Requests mirrored to a shadow version.", labels=[*mv, "code"]
        )
        agreement = CounterMetricFamily(
            "mlops_shadow_agreement",
            "Shadow predictions compared with the primary's.",
            labels=[*mv, "agree"],
        )
        feedback = CounterMetricFamily(
            "mlops_feedback", "Business outcomes reported via /v2/feedback.", labels=mv
        )
        feedback_value = CounterMetricFamily(
            "mlops_feedback_value", "Sum of reported feedback values.", labels=mv
        )
        batches = CounterMetricFamily(
            "mlops_batches", "Model runs; requests/batches is the mean batch size.", labels=mv
        )
        batched = CounterMetricFamily(
            "mlops_batched_requests", "Requests carried by model runs.", labels=mv
        )
        for (model, version), s in sorted(self._book.versions.items()):
            key = [model, version]
            for route, counts in s.by_route:
                # Routed series always exist; the others only once such a request arrived.
                if route != "routed" and not counts.requests:
                    continue
                for code, count in sorted(counts.requests.items()):
                    requests.add_metric([*key, code, route], count)
                _histogram(duration, [*key, route], counts.duration)
            for stage, hist in zip(STAGES, s.stages, strict=True):
                _histogram(stages, [*key, stage], hist)
            for code, count in sorted(s.shadow.items()):
                shadow.add_metric([*key, code], count)
            if s.shadow:
                for agree, count in s.agreement.items():
                    agreement.add_metric([*key, agree], count)
            feedback.add_metric(key, s.feedback)
            feedback_value.add_metric(key, s.feedback_value)
            batches.add_metric(key, s.batches)
            batched.add_metric(key, s.batched_requests)
        depth = GaugeMetricFamily(
            "mlops_queue_depth", "Requests waiting for a batch slot.", labels=mv
        )
        for (model, version), n in sorted(self._queue_depths().items()):
            depth.add_metric([model, version], n)
        rate = GaugeMetricFamily(
            "mlops_request_rate",
            "Inference requests per second, exponentially weighted over about a minute.",
            labels=["model"],
        )
        for model, value in sorted(self._book.request_rates().items()):
            rate.add_metric([model], value)
        generation = GaugeMetricFamily("mlops_routing_generation", "Routing table generation.")
        generation.add_metric([], self._generation())
        yield from (requests, duration, stages, shadow, agreement, feedback, feedback_value)
        yield from (batches, batched, depth, rate, generation)
        if self._drift is not None:
            yield from _drift_gauges(self._drift())


def _histogram(family: HistogramMetricFamily, labels: list[str], hist: Histogram) -> None:
    cumulative, buckets = 0, []
    for le, count in zip(_LE, hist.counts, strict=True):
        cumulative += count
        buckets.append((le, cumulative))
    family.add_metric(labels, buckets, hist.sum)


def _drift_gauges(
    drift: dict[sampling.Key, list[sampling.FeatureDrift]],
) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    labels = ["model", "version", "feature"]
    sigma = GaugeMetricFamily(
        "mlops_feature_drift_sigma",
        "Mean shift of sampled live inputs, in training standard deviations.",
        labels=labels,
    )
    psi = GaugeMetricFamily(
        "mlops_feature_drift_psi",
        "Population stability index of sampled live inputs over the training bins.",
        labels=labels,
    )
    for (model, version), features in sorted(drift.items()):
        for f in features:
            sigma.add_metric([model, version, f.name], f.sigma)
            if f.psi is not None:
                psi.add_metric([model, version, f.name], f.psi)
    return sigma, psi


def registry(collector: EngineCollector) -> CollectorRegistry:
    """A registry of this worker only: replicas never share or double-count samples."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    return reg
