"""Capacity and cost lines, shared by the text and markdown views."""

from __future__ import annotations

from mlops.core import format_duration
from mlops.plan import resources as r
from mlops.plan import types as t


def number(value: float) -> str:
    return f"{value:.4g}" if value < 10_000 else f"{value:,.0f}"


def resources(res: r.Resources) -> str:
    """`2 CPU, 4 GiB, 2 nvidia-t4` (`nothing` when empty)."""
    parts = []
    if res.cpu:
        parts.append(f"{number(res.cpu)} CPU")
    if res.memory_gib:
        parts.append(f"{number(res.memory_gib)} GiB")
    parts += [f"{number(n)} {name}" for name, n in res.accelerators.items()]
    return ", ".join(parts) or "nothing"


def usage(use: r.Usage) -> str:
    parts = [f"{number(use.cpu_hours)} CPU-hours", f"{number(use.memory_gib_hours)} GiB-hours"]
    parts += [f"{number(h)} {name}-hours" for name, h in use.accelerator_hours.items()]
    return ", ".join(parts)


def change(before: r.Resources, after: r.Resources) -> str:
    old, new = resources(before), resources(after)
    return new if old == new else f"{old} -> {new}"


def model_line(model: r.ModelCapacity) -> str:
    """`1 x (1 CPU, 1 GiB) -> 2 x (2 CPU, 4 GiB); canary peak +2 CPU, +4 GiB for 3m`."""
    text = f"{_replicas(model.replicas_before, model.before)} -> "
    text += _replicas(model.replicas_after, model.after)
    if model.peak_extra != r.Resources():
        text += f"; canary peak +{resources(model.peak_extra)}"
        if model.rollout_seconds:
            text += f" for {format_duration(model.rollout_seconds)} ({usage(model.rollout)})"
    if model.autoscaling is not None:
        scaling = model.autoscaling
        text += f"; autoscaling on {scaling.metric} (target {scaling.target:g})"
    return text


def cost(capacity: r.Capacity) -> str | None:
    priced = capacity.cost
    if priced is None:
        return None
    money = priced.currency

    def amount(value: float | None) -> str:
        return "unpriced" if value is None else f"{value:,.4g}"

    text = f"{money} {amount(priced.hourly_before)}/h -> {amount(priced.hourly_after)}/h"
    if priced.rollout != 0:
        text += f", rollout {amount(priced.rollout)}"
    if priced.unpriced:
        text += f" (no price for {', '.join(priced.unpriced)})"
    return text


def shown(plan: t.Plan) -> list[str]:
    """The models whose capacity a reviewer sees: those the plan changes."""
    return [name for name in plan.models if name in plan.capacity.models]


def _replicas(count: int, res: r.Resources) -> str:
    if count == 0:
        return "none"
    return f"{count} x ({resources(_each(res, count))})"


def _each(res: r.Resources, count: int) -> r.Resources:
    return r.Resources(
        cpu=res.cpu / count,
        memory_gib=res.memory_gib / count,
        accelerators={k: v / count for k, v in res.accelerators.items()},
    )
