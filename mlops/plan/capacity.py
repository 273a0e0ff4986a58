"""Capacity and cost of a plan: replicas x hardware before and after, the peak while a canary
runs beside the serving version, and the core-, GiB- and accelerator-hours of that extra over
the rollout's holds, priced by mlops.yaml `costs:` when given. Pure: values in, values out.

- before: the replicas serving now x the hardware they were applied with (the record apply
  keeps; without one, the spec's hardware);
- after: the replicas the plan leaves x the spec's hardware (0 for a deleted model);
- peak extra: the new version's replicas x the spec's hardware, while it is loaded beside a
  serving version (a canary or shadow rollout; not a first deployment, nothing else serves);
- rollout usage: peak extra x the sum of the rollout's holds (its estimate), in hours.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence

from mlops.plan import resources as r
from mlops.plan import result
from mlops.plan import types as t
from mlops.spec import models as spec
from mlops.state import models as state

_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)?$")
_FACTOR = {
    None: 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}
HOUR = 3600.0


def gib(quantity: str) -> float:
    """A Kubernetes memory quantity in GiB: `512Mi` -> 0.5, `1G` -> 0.931..."""
    match = _QUANTITY.match(quantity)
    if match is None:
        raise ValueError(f"{quantity!r} is not a memory quantity")
    return float(match.group(1)) * _FACTOR[match.group(2)] / 2.0**30


def accelerators(hardware: spec.Hardware) -> int:
    """Accelerators one replica holds (a named accelerator with no count is one, as the
    kubernetes target requests it)."""
    return 0 if hardware.accelerator == "none" else max(hardware.count, 1)


def held(replicas: int, hardware: spec.Hardware | None) -> r.Resources:
    if hardware is None or replicas == 0:
        return r.Resources()
    count = accelerators(hardware)
    return r.Resources(
        cpu=_round(replicas * hardware.cpu),
        memory_gib=_round(replicas * gib(hardware.memory)),
        accelerators={hardware.accelerator: replicas * count} if count else {},
    )


def over(resources: r.Resources, seconds: float) -> r.Usage:
    hours = seconds / HOUR
    return r.Usage(
        cpu_hours=_round(resources.cpu * hours),
        memory_gib_hours=_round(resources.memory_gib * hours),
        accelerator_hours={k: _round(v * hours) for k, v in resources.accelerators.items()},
    )


def compute(
    items: Sequence[result.Desired],
    live: state.LiveState,
    actions: Sequence[t.Action],
    estimates: Mapping[str, t.Estimate],
    deleted: Collection[str] = (),
    costs: spec.WorkspaceCosts | None = None,
) -> r.Capacity:
    by_model: dict[str, list[t.Action]] = {}
    for action in actions:
        by_model.setdefault(action.model, []).append(action)
    engine = next((a.after for a in actions if isinstance(a.after, t.ScaleEnginePayload)), None)
    models: dict[str, r.ModelCapacity] = {}
    for item in items:
        name = item.deployment.name
        estimate = estimates.get(name)
        models[name] = _model(
            item,
            live,
            by_model.get(name, []),
            engine.replicas if engine is not None else None,
            estimate.rollout_seconds if estimate is not None else 0.0,
        )
    for name in deleted:
        before = _replicas_before(live.runtime.get(name))
        models[name] = r.ModelCapacity(
            replicas_before=before,
            replicas_after=0,
            hardware_before=spec.Hardware() if before else None,
            before=held(before, spec.Hardware()),
        )
    return _totals(models, costs)


def _replicas_before(runtime: state.RuntimeModel | None) -> int:
    return runtime.replicas if runtime is not None and runtime.loaded else 0


def _model(
    item: result.Desired,
    live: state.LiveState,
    actions: Sequence[t.Action],
    engine_count: int | None,
    rollout_seconds: float,
) -> r.ModelCapacity:
    deployment = item.deployment
    serving = deployment.spec.serving
    version = deployment.spec.model.version
    runtime = live.runtime.get(deployment.name) if live.runtime_reachable else None
    replicas_before = _replicas_before(runtime)
    hardware_before = None
    if replicas_before:
        hardware_before = item.served.hardware if item.served is not None else serving.hardware
    loads = [
        a.after
        for a in actions
        if isinstance(a.after, t.LoadPayload | t.UpdateConfigPayload) and a.after.semver == version
    ]
    if engine_count is not None:
        replicas_after = engine_count
    elif loads:
        replicas_after = loads[-1].replicas
    elif replicas_before:
        replicas_after = replicas_before
    else:
        replicas_after = serving.replicas.min
    registry = live.registry.get(deployment.name)
    serving_version = registry.stable if registry is not None else None
    # A new version loaded while another serves: both run until the old one is retired.
    beside = bool(replicas_before) and serving_version not in (None, version)
    new_load = beside and any(
        isinstance(a.after, t.LoadPayload)
        and a.after.semver == version
        and a.symbol is t.ChangeSymbol.CREATE
        for a in actions
    )
    peak = held(replicas_after, serving.hardware) if new_load else r.Resources()
    return r.ModelCapacity(
        replicas_before=replicas_before,
        replicas_after=replicas_after,
        hardware_before=hardware_before,
        hardware_after=serving.hardware,
        autoscaling=serving.autoscaling,
        replicas_range=serving.replicas,
        before=held(replicas_before, hardware_before),
        after=held(replicas_after, serving.hardware),
        peak_extra=peak,
        rollout_seconds=rollout_seconds if new_load else 0.0,
        rollout=over(peak, rollout_seconds) if new_load else r.Usage(),
    )


def _totals(models: dict[str, r.ModelCapacity], costs: spec.WorkspaceCosts | None) -> r.Capacity:
    before = _sum(m.before for m in models.values())
    after = _sum(m.after for m in models.values())
    peak = _sum(m.peak_extra for m in models.values())
    rollout = r.Usage(
        cpu_hours=_round(sum(m.rollout.cpu_hours for m in models.values())),
        memory_gib_hours=_round(sum(m.rollout.memory_gib_hours for m in models.values())),
        accelerator_hours=_add(m.rollout.accelerator_hours for m in models.values()),
    )
    return r.Capacity(
        models=dict(sorted(models.items())),
        before=before,
        after=after,
        peak_extra=peak,
        rollout=rollout,
        cost=_cost(costs, before, after, rollout) if costs is not None else None,
    )


def _cost(
    costs: spec.WorkspaceCosts, before: r.Resources, after: r.Resources, rollout: r.Usage
) -> r.Cost:
    used = set(before.accelerators) | set(after.accelerators) | set(rollout.accelerator_hours)
    unpriced = sorted(used - set(costs.accelerator_hour))

    def hourly(res: r.Resources) -> float | None:
        if any(name in unpriced for name in res.accelerators):
            return None
        return _round(
            res.cpu * costs.cpu_hour
            + res.memory_gib * costs.memory_gib_hour
            + sum(n * costs.accelerator_hour[a] for a, n in res.accelerators.items())
        )

    rollout_cost = None
    if not any(name in unpriced for name in rollout.accelerator_hours):
        rollout_cost = _round(
            rollout.cpu_hours * costs.cpu_hour
            + rollout.memory_gib_hours * costs.memory_gib_hour
            + sum(h * costs.accelerator_hour[a] for a, h in rollout.accelerator_hours.items())
        )
    return r.Cost(
        currency=costs.currency,
        hourly_before=hourly(before),
        hourly_after=hourly(after),
        rollout=rollout_cost,
        unpriced=unpriced,
    )


def _sum(items: Iterable[r.Resources]) -> r.Resources:
    listed = list(items)
    return r.Resources(
        cpu=_round(sum(i.cpu for i in listed)),
        memory_gib=_round(sum(i.memory_gib for i in listed)),
        accelerators={k: v for k, v in _add(i.accelerators for i in listed).items()},
    )


def _add(maps: Iterable[Mapping[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for one in maps:
        for key, value in one.items():
            total[key] = _round(total.get(key, 0.0) + value)
    return dict(sorted(total.items()))


def _round(value: float) -> float:
    # Six decimals: the figures are shown and compared, float noise is not a change.
    return round(value, 6)
