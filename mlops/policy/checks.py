"""One function per check key: (rule value, model change) -> findings. Pure.

Rollout-shape checks judge updates only (traffic taken from a serving version); a first
deployment has no live traffic to protect. Checks of how a rollout starts skip a rollout the
plan resumes (its start was checked when it began). Threshold checks judge every checkpoint.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import semver

from mlops import core
from mlops.plan import types as plan_types
from mlops.policy import facts, rules
from mlops.spec import models as spec

Kind = plan_types.ActionKind


@dataclass(frozen=True)
class Finding:
    detail: str  # what the plan does, in numbers
    action_id: str | None = None


Check = Callable[[Any, facts.RolloutFacts], list[Finding]]


def _pct(value: int) -> str:
    return f"{value}%"


def max_first_step_weight(limit: int, change: facts.RolloutFacts) -> list[Finding]:
    if not change.is_update or change.continuing:
        return []
    first = change.steps[0].weight if change.steps else 100
    if first <= limit:
        return []
    where = change.steps[0].action_id if change.steps else None
    return [
        Finding(
            f"first step sends {_pct(first)} to {change.new_version} (limit {_pct(limit)})", where
        )
    ]


def min_hold(minimum: float, change: facts.RolloutFacts) -> list[Finding]:
    if not change.is_update:
        return []
    if not change.steps:
        return [Finding(f"{change.new_version} takes 100% at once, with no hold")]
    found = []
    for step in change.steps:
        if step.hold is None:
            found.append(
                Finding(f"step {_pct(step.weight)} has no checkpoint gate", step.action_id)
            )
        elif step.hold < minimum:
            held, need = core.format_duration(step.hold), core.format_duration(minimum)
            found.append(
                Finding(
                    f"step {_pct(step.weight)} holds {held} (minimum {need})", step.checkpoint_id
                )
            )
    return found


def min_canary_steps(minimum: int, change: facts.RolloutFacts) -> list[Finding]:
    if not change.is_update or change.continuing or len(change.steps) >= minimum:
        return []
    weights = " -> ".join(_pct(w) for w in [*(s.weight for s in change.steps), 100])
    return [Finding(f"{len(change.steps)} step(s) before 100% ({weights}); minimum {minimum}")]


def max_step_increase(limit: int, change: facts.RolloutFacts) -> list[Finding]:
    if not change.is_update:
        return []
    found = []
    start = [] if change.continuing else [0]
    weights = [*start, *(s.weight for s in change.steps), 100]
    for before, after in itertools.pairwise(weights):
        if after - before > limit:
            found.append(Finding(f"weight jumps {_pct(before)} -> {_pct(after)} (limit +{limit})"))
    return found


def _checkpoint(action: plan_types.Action) -> plan_types.CheckpointPayload:
    assert isinstance(action.after, plan_types.CheckpointPayload)  # facts.checkpoints are
    return action.after


def require_gates(required: list[str], change: facts.RolloutFacts) -> list[Finding]:
    if not change.is_update:
        return []
    traffic = [c for c in change.checkpoints if not _checkpoint(c).shadow]
    if not traffic:
        return [Finding(f"{change.new_version} gets traffic with no gate checkpoint")]
    found = []
    for checkpoint in traffic:
        labels = {g.name or g.metric for g in _checkpoint(checkpoint).gates}
        missing = [r for r in required if r not in labels]
        if missing:
            weight = _checkpoint(checkpoint).weight
            found.append(
                Finding(
                    f"checkpoint at {weight}% lacks gate(s) {', '.join(missing)}", checkpoint.id
                )
            )
    return found


def _threshold_check(
    metrics: tuple[str, ...], threshold: Callable[[spec.Gate], float | None], what: str
) -> Check:
    def check(limit: float, change: facts.RolloutFacts) -> list[Finding]:
        found = []
        for checkpoint in change.checkpoints:
            for gate in _checkpoint(checkpoint).gates:
                value = threshold(gate)
                if gate.metric in metrics and value is not None and value > limit:
                    found.append(
                        Finding(f"{gate.metric} {what} {value:g} (limit {limit:g})", checkpoint.id)
                    )
        return found

    return check


def min_requests(minimum: int, change: facts.RolloutFacts) -> list[Finding]:
    found = []
    for checkpoint in change.checkpoints:
        value = _checkpoint(checkpoint).min_requests
        if value < minimum:
            found.append(Finding(f"min_requests {value:g} (minimum {minimum})", checkpoint.id))
    return found


def forbid_strategy(
    forbidden: list[rules.RolloutStrategy], change: facts.RolloutFacts
) -> list[Finding]:
    if change.is_update and change.strategy in forbidden:
        return [Finding(f"{change.new_version} is rolled out {change.strategy}")]
    return []


def _major(version: str | None) -> int | None:
    try:
        return int(semver.Version.parse(version or "").major)
    except (ValueError, TypeError):
        return None


def require_shadow_for_major(enabled: bool, change: facts.RolloutFacts) -> list[Finding]:
    if not enabled or not change.is_update:
        return []
    new, old = _major(change.new_version), _major(change.previous_version)
    if new is None or old is None or new <= old:
        return []
    if change.strategy is rules.RolloutStrategy.SHADOW:
        return []
    return [
        Finding(
            f"{change.previous_version} -> {change.new_version} is a major bump"
            " without a shadow phase"
        )
    ]


def forbid_delete(enabled: bool, change: facts.RolloutFacts) -> list[Finding]:
    if not enabled:
        return []
    return [Finding(f"deletes deployment {change.name}", a.id) for a in change.of_kind(Kind.DELETE)]


def require_sha256(enabled: bool, change: facts.RolloutFacts) -> list[Finding]:
    if not enabled:
        return []
    return [
        Finding(f"{a.after.semver} is registered without a sha256 pin", a.id)
        for a in change.actions
        if isinstance(a.after, plan_types.RegisterPayload) and not a.after.sha256
    ]


def max_replicas(limit: int, change: facts.RolloutFacts) -> list[Finding]:
    capacity = change.capacity
    if capacity is None or capacity.replicas_after <= limit:
        return []
    return [Finding(f"runs {capacity.replicas_after} replicas after the plan (budget {limit})")]


def max_accelerators(limit: int, change: facts.RolloutFacts) -> list[Finding]:
    capacity = change.capacity
    if capacity is None:
        return []
    held = capacity.after.accelerators
    total = sum(held.values())
    if total <= limit:
        return []
    kinds = ", ".join(f"{n:g} {name}" for name, n in held.items())
    return [Finding(f"holds {kinds} after the plan (budget {limit})")]


def max_accelerator_hours(limit: float, change: facts.RolloutFacts) -> list[Finding]:
    capacity = change.capacity
    if capacity is None:
        return []
    hours = sum(capacity.rollout.accelerator_hours.values())
    if hours <= limit:
        return []
    return [Finding(f"its rollout uses {hours:.4g} accelerator-hours (limit {limit:g})")]


def _cost_check(field: str, what: str) -> PlanCheck:
    def check(limit: float, plan: plan_types.Plan) -> list[Finding]:
        cost = plan.capacity.cost
        if cost is None:
            return []  # no cost table: nothing is priced, nothing to cap
        value = getattr(cost, field)
        if value is None:
            missing = ", ".join(cost.unpriced)
            return [Finding(f"{what} is unknown: no price for {missing} (limit {limit:g})")]
        if value <= limit:
            return []
        return [Finding(f"{what} is {cost.currency} {value:,.4g} (limit {limit:g})")]

    return check


PlanCheck = Callable[[Any, plan_types.Plan], list[Finding]]

PLAN_CHECKS: dict[str, PlanCheck] = {
    "max_hourly_cost": _cost_check("hourly_after", "the cost per hour after the plan"),
    "max_rollout_cost": _cost_check("rollout", "the cost of the rollouts' extra capacity"),
}

CHECKS: dict[str, Check] = {
    "max_first_step_weight": max_first_step_weight,
    "min_hold": min_hold,
    "min_canary_steps": min_canary_steps,
    "max_step_increase": max_step_increase,
    "require_gates": require_gates,
    "max_error_rate_threshold": _threshold_check(("error_rate",), lambda g: g.max, "allows"),
    "max_latency_increase": _threshold_check(
        ("latency_p99", "latency_p50"), lambda g: g.max_increase, "allows an increase of"
    ),
    "min_requests": min_requests,
    "forbid_strategy": forbid_strategy,
    "require_shadow_for_major": require_shadow_for_major,
    "forbid_delete": forbid_delete,
    "require_sha256": require_sha256,
    "max_replicas": max_replicas,
    "max_accelerators": max_accelerators,
    "max_accelerator_hours": max_accelerator_hours,
}
