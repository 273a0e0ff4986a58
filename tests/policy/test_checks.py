"""Every check, table-driven over plans written inline (tests/policy/conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest

from mlops.plan import types as t
from mlops.policy import evaluate, rules
from tests.policy.conftest import GATES, canary, delete, first, immediate, plan, restore

LAX_GATES = [{"metric": "error_rate", "max": 0.05}, {"metric": "latency_p99", "max_increase": 2.0}]

# (check, value, plan, expected details: each a substring of one violation, in order)
CASES: list[tuple[str, Any, t.Plan, list[str]]] = [
    ("max_first_step_weight", 10, plan(canary()), []),
    ("max_first_step_weight", 10, plan(canary(steps=((25, 300), (50, 300)))), ["sends 25%"]),
    ("max_first_step_weight", 10, plan(immediate()), ["sends 100% to 1.1.0 (limit 10%)"]),
    ("max_first_step_weight", 10, plan(first()), []),  # nothing serving yet
    ("max_first_step_weight", 10, plan(canary(resume_at=50, steps=((50, 60),))), []),
    ("min_hold", 300, plan(canary()), []),
    ("min_hold", "5m", plan(canary(steps=((5, 60), (50, 600)))), ["step 5% holds 1m (minimum 5m)"]),
    ("min_hold", "5m", plan(canary(steps=((5, 0), (50, 600)))), ["step 5% has no checkpoint"]),
    ("min_hold", "5m", plan(immediate()), ["takes 100% at once"]),
    ("min_canary_steps", 3, plan(canary()), []),
    (
        "min_canary_steps",
        3,
        plan(canary(steps=((10, 300),))),
        ["1 step(s) before 100% (10% -> 100%)"],
    ),
    ("min_canary_steps", 3, plan(immediate()), ["0 step(s)"]),
    ("min_canary_steps", 3, plan(canary(resume_at=50, steps=((50, 60),))), []),
    ("max_step_increase", 50, plan(canary()), []),
    ("max_step_increase", 40, plan(canary()), ["50% -> 100% (limit +40)"]),
    (
        "max_step_increase",
        40,
        plan(canary(steps=((5, 60), (60, 60)))),
        ["5% -> 60%"],
    ),
    ("require_gates", ["error_rate", "latency_p99"], plan(canary()), []),
    (
        "require_gates",
        ["error_rate", "latency_p99"],
        plan(canary(gates=[{"metric": "error_rate", "max": 0.001}])),
        ["checkpoint at 5% lacks gate(s) latency_p99", "10%", "50%"],
    ),
    (
        "require_gates",
        ["ctr"],
        plan(canary(steps=((5, 60),), gates=[*GATES, {"name": "ctr", "query": "q", "min": 0.1}])),
        [],
    ),
    (
        "require_gates",
        ["error_rate"],
        plan(canary(steps=((5, 0), (50, 0)))),
        ["no gate checkpoint"],
    ),
    ("require_gates", ["error_rate"], plan(first()), []),
    ("max_error_rate_threshold", 0.01, plan(canary()), []),
    (
        "max_error_rate_threshold",
        0.01,
        plan(canary(steps=((5, 60),), gates=LAX_GATES)),
        ["error_rate allows 0.05 (limit 0.01)"],
    ),
    (
        "max_latency_increase",
        0.5,
        plan(canary(steps=((5, 60),), gates=LAX_GATES)),
        ["latency_p99 allows an increase of 2 (limit 0.5)"],
    ),
    ("max_latency_increase", 0.5, plan(canary()), []),
    ("min_requests", 50, plan(canary(steps=((5, 60),), min_requests=10)), ["min_requests 10"]),
    ("min_requests", 50, plan(canary()), []),
    ("forbid_strategy", ["immediate"], plan(immediate()), ["1.1.0 is rolled out immediate"]),
    ("forbid_strategy", ["immediate"], plan(first()), []),
    ("forbid_strategy", ["immediate"], plan(restore()), []),  # a restore is not a rollout
    ("forbid_strategy", ["canary"], plan(canary()), ["rolled out canary"]),
    ("forbid_strategy", ["canary"], plan(canary(shadow=(100, 60))), []),
    ("require_shadow_for_major", True, plan(canary(new="2.0.0")), ["1.0.0 -> 2.0.0 is a major"]),
    ("require_shadow_for_major", True, plan(canary(new="2.0.0", shadow=(50, 0))), []),
    ("require_shadow_for_major", True, plan(canary(new="1.9.0")), []),
    ("require_shadow_for_major", False, plan(canary(new="2.0.0")), []),
    ("forbid_delete", True, plan(delete(), canary()), ["deletes deployment old"]),
    ("forbid_delete", True, plan(canary()), []),
    ("require_sha256", True, plan(canary(sha256=None)), ["1.1.0 is registered without a sha256"]),
    ("require_sha256", True, plan(canary()), []),
]


@pytest.mark.parametrize(("check", "value", "the_plan", "expected"), CASES)
def test_check(check: str, value: Any, the_plan: t.Plan, expected: list[str]) -> None:
    rule = rules.Rule.model_validate({"id": "r", "message": "why", check: value})
    result = evaluate.evaluate(the_plan, (rule,))
    details = [v.detail for v in result.violations]
    assert len(details) == len(expected), details
    for detail, want in zip(details, expected, strict=True):
        assert want in detail


def test_scope_by_model_glob() -> None:
    the_plan = plan(immediate(name="fraud-a"), immediate(name="search"))
    rule = rules.Rule.model_validate(
        {"id": "r", "message": "m", "models": "fraud-*", "forbid_strategy": "immediate"}
    )
    assert [v.model for v in evaluate.evaluate(the_plan, (rule,)).violations] == ["fraud-a"]
    listed = rule.model_copy(update={"models": ["search", "nothing"]})
    assert [v.model for v in evaluate.evaluate(the_plan, (listed,)).violations] == ["search"]


def test_severity_and_strict() -> None:
    warn = rules.Rule.model_validate(
        {"id": "w", "message": "m", "severity": "warning", "forbid_delete": True}
    )
    result = evaluate.evaluate(plan(delete()), (warn,))
    assert result.warnings and not result.errors
    assert result.passed() and not result.passed(strict=True)
    doc = result.to_json(strict=True)
    assert doc["passed"] is False and doc["warnings"] == 1
    assert doc["violations"][0] == {
        "rule": "w",
        "severity": "warning",
        "model": "old",
        "message": "m",
        "detail": "deletes deployment old",
        "action": "old/01-delete",
    }


def test_violation_points_at_the_action() -> None:
    rule = rules.Rule.model_validate({"id": "r", "message": "m", "min_hold": "10m"})
    (violation, *_) = evaluate.evaluate(plan(canary()), (rule,)).violations
    assert violation.action is not None and violation.action.endswith("checkpoint_gate")


def test_an_empty_plan_passes() -> None:
    rule = rules.Rule.model_validate({"id": "r", "message": "m", "forbid_delete": True})
    result = evaluate.evaluate(plan(), (rule,))
    assert result.passed(strict=True) and result.models == ()
