"""`tolerance: 0` and `max_increase: 0` are valid and strict (issue 10): they reach the
conformance runner as 0, never as the 0.005 / 0.20 defaults that `x or DEFAULT` gave them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlops import conformance
from mlops.conformance import runner
from mlops.plan import payloads
from mlops.spec import models as spec
from tests.conformance.conftest import Target, deployment, train
from tests.conformance.test_conformance import register_and_load


def strict(dep: spec.ModelDeployment, validation: Path) -> spec.ModelDeployment:
    """The deployment with `tolerance: 0` and a `latency_p99` gate of `max_increase: 0`."""
    data: dict[str, Any] = dep.model_dump(mode="json")
    data["spec"]["model"]["validation"] = {"data": str(validation), "tolerance": 0}
    data["spec"]["rollout"]["gates"] = [
        {"metric": "error_rate", "max": 0},
        {"metric": "latency_p99", "max_increase": 0},
    ]
    return spec.ModelDeployment.model_validate(data)


def test_the_plan_payload_keeps_zero() -> None:
    dep = deployment("zero", "1.0.0", Path("m.onnx"), accuracy=0.9, p99_ms=10)
    after = payloads.conformance(strict(dep, Path("val.npz")))
    assert after["tolerance"] == 0 and after["max_increase"] == 0


def test_defaults_apply_only_when_the_payload_has_no_value() -> None:
    assert runner._given({"tolerance": None}, "tolerance", 0.005) == 0.005
    assert runner._given({}, "max_increase", 0.2) == 0.2
    assert runner._given({"tolerance": 0}, "tolerance", 0.005) == 0
    assert runner._given({"max_increase": 0.0}, "max_increase", 0.2) == 0.0


@pytest.mark.slow
def test_zero_tolerance_fails_a_model_one_row_below_its_baseline(target: Target) -> None:
    good = train(target.ws.root, "zero-tol", shuffle_labels=False)
    # One validation row (of 400) better than the model scores: within the default 0.005,
    # outside a tolerance of 0.
    claimed = good.accuracy + 1 / 400
    dep = strict(
        deployment("zero-tol", "1.0.0", good.artifact, accuracy=claimed, p99_ms=200),
        good.validation,
    )
    register_and_load(target, dep, good.validation)
    after = {**payloads.conformance(dep), "validation": str(good.validation)}
    result = conformance.run(target, "zero-tol", "1.0.0", after)
    assert result["tolerance"] == 0 and result["max_increase"] == 0
    assert result["p99_budget_ms"] == pytest.approx(200)  # the baseline p99 itself, +0%
    assert result["passed"] is False
    assert "below the baseline" in result["reason"] and "tolerance 0" in result["reason"]


@pytest.mark.slow
def test_zero_tolerance_passes_a_model_exactly_at_its_baseline(target: Target) -> None:
    good = train(target.ws.root, "zero-tol-ok", shuffle_labels=False)
    dep = strict(
        deployment("zero-tol-ok", "1.0.0", good.artifact, accuracy=good.accuracy, p99_ms=200),
        good.validation,
    )
    register_and_load(target, dep, good.validation)
    after = {**payloads.conformance(dep), "validation": str(good.validation)}
    result = conformance.run(target, "zero-tol-ok", "1.0.0", after)
    assert result["passed"] is True, result["reason"]
    assert result["accuracy"] == pytest.approx(good.accuracy, abs=1e-9)
