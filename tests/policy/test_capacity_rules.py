"""Budgets, capacity and cost caps, and rules scoped to environments: each with a plan that
passes and one that fails. Capacity plans come from the real planner (values in, plan out)."""

from __future__ import annotations

from typing import Any

import pytest

from mlops.plan import diff
from mlops.plan import types as t
from mlops.policy import evaluate, load
from mlops.spec import models as spec
from mlops.spec import safeyaml
from mlops.state import models as state
from tests.plan import helpers as h
from tests.policy.conftest import canary, immediate, plan

GPU = """
serving:
  hardware: {cpu: 2, memory: 4Gi, accelerator: nvidia-t4, count: 1}
  replicas: {min: 2, max: 4}
"""
COSTS = spec.WorkspaceCosts(
    cpu_hour=0.04, memory_gib_hour=0.005, accelerator_hour={"nvidia-t4": 0.35}
)


def _gpu_plan(costs: spec.WorkspaceCosts | None = COSTS, extra: str = GPU) -> t.Plan:
    """fraud 1.0.0 -> 1.1.0 on 2 x (2 CPU, 4 GiB, 1 T4): 0.90 per hour before and after, a
    peak of 2 more T4 for 180s of holds = 0.1 T4-hours, the rollout costing 0.045."""
    v1, v11 = h.deployment(version="1.0.0", extra=extra), h.deployment(version="1.1.0", extra=extra)
    live = state.LiveState(
        registry={"fraud": h.registry(h.reg_version(v1), stable="1.0.0")},
        runtime={"fraud": h.runtime("fraud", {"1.0.0": 100}, replicas=2)},
    )
    return diff.diff(
        [h.desired(v11)],
        live,
        workspace="/ws",
        created_at=h.CREATED_AT,
        spec_digest="d",
        costs=costs,
    )


def _violations(rule: dict[str, Any], the_plan: t.Plan) -> list[str]:
    text = "rules:\n  - " + str({"id": "r", "message": "m", **rule}).replace("'", '"') + "\n"
    rule_set = load.parse_policies({"p.yaml": safeyaml.read_text(text)})
    return [v.detail for v in evaluate.evaluate(the_plan, rule_set.rules).violations]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"max_replicas": 2}, []),
        ({"max_replicas": 1}, ["runs 2 replicas after the plan (budget 1)"]),
        ({"max_accelerators": 2}, []),
        ({"max_accelerators": 1}, ["holds 2 nvidia-t4 after the plan (budget 1)"]),
        ({"max_accelerator_hours": 0.1}, []),
        ({"max_accelerator_hours": 0.05}, ["its rollout uses 0.1 accelerator-hours (limit 0.05)"]),
        ({"max_hourly_cost": 0.9}, []),
        ({"max_hourly_cost": 0.5}, ["the cost per hour after the plan is USD 0.9 (limit 0.5)"]),
        ({"max_rollout_cost": 0.045}, []),
        (
            {"max_rollout_cost": 0.04},
            ["the cost of the rollouts' extra capacity is USD 0.045 (limit 0.04)"],
        ),
    ],
)
def test_budgets_and_caps(rule: dict[str, Any], expected: list[str]) -> None:
    assert _violations(rule, _gpu_plan()) == expected


def test_cost_caps_without_prices() -> None:
    # No cost table: nothing is priced, nothing to cap.
    assert _violations({"max_hourly_cost": 0.0}, _gpu_plan(costs=None)) == []
    # A cost table without the accelerator's price cannot show the cap holds: a violation.
    unpriced = _gpu_plan(costs=spec.WorkspaceCosts(cpu_hour=0.04))
    assert _violations({"max_hourly_cost": 10}, unpriced) == [
        "the cost per hour after the plan is unknown: no price for nvidia-t4 (limit 10)"
    ]


def test_plans_without_changes_are_not_capped() -> None:
    v1 = h.deployment(version="1.0.0", extra=GPU)
    live = state.LiveState(
        registry={"fraud": h.registry(h.reg_version(v1), stable="1.0.0")},
        runtime={"fraud": h.runtime("fraud", {"1.0.0": 100}, replicas=2)},
    )
    unchanged = diff.diff(
        [h.desired(v1)], live, workspace="/ws", created_at="x", spec_digest="d", costs=COSTS
    )
    assert unchanged.actions == [] and unchanged.capacity.cost is not None
    assert _violations({"max_hourly_cost": 0.1}, unchanged) == []


def _in(environment: str | None, the_plan: t.Plan) -> t.Plan:
    return the_plan.model_copy(update={"environment": environment})


def test_first_step_limit_per_environment() -> None:
    rule = {"max_first_step_weight": 5, "environments": ["prod", "prod-*"]}
    ten_percent = plan(canary(steps=((10, 300), (50, 300))))
    assert _violations(rule, _in("prod", ten_percent)) == [
        "first step sends 10% to 1.1.0 (limit 5%)"
    ]
    assert _violations(rule, _in("prod-eu", ten_percent)) != []
    assert _violations(rule, _in("staging", ten_percent)) == []
    assert _violations(rule, _in(None, ten_percent)) == []  # no environment named
    assert _violations(rule, _in("prod", plan(canary()))) == []  # 5% first: passes


def test_immediate_forbidden_in_named_environments() -> None:
    rule = {"forbid_strategy": "immediate", "environments": "prod"}
    assert _violations(rule, _in("prod", plan(immediate()))) == ["1.1.0 is rolled out immediate"]
    assert _violations(rule, _in("dev", plan(immediate()))) == []
    assert _violations(rule, _in("prod", plan(canary()))) == []


def test_the_default_prod_rule_is_scoped() -> None:
    rules = load.load_builtin().rules
    ten_percent = plan(canary(steps=((10, 300), (50, 300), (90, 300))))
    in_prod = evaluate.evaluate(_in("prod", ten_percent), rules)
    elsewhere = evaluate.evaluate(_in("dev", ten_percent), rules)
    assert "prod-first-step" in {v.rule for v in in_prod.errors}
    assert "prod-first-step" not in {v.rule for v in elsewhere.violations}
