"""Pure helpers of apply: the weight table after a rollback, the spec rebuilt from a plan."""

from __future__ import annotations

import pytest

from mlops import errors
from mlops.apply import rebuild, rollback
from mlops.plan import types as t

SIGNATURE = {
    "inputs": [{"name": "input", "dtype": "FP32", "shape": [-1, 30]}],
    "outputs": [{"name": "probabilities", "dtype": "FP32", "shape": [-1, 2]}],
}


def test_rollback_weights_return_to_stable() -> None:
    assert rollback.weights_without(
        {"1.0.0": 75, "1.1.0": 25}, "1.1.0", "1.0.0", {"1.0.0", "1.1.0"}
    ) == {"1.0.0": 100}


def test_rollback_weights_without_stable_keep_the_others() -> None:
    weights = {"1.0.0": 50, "0.9.0": 25, "1.1.0": 25}
    assert rollback.weights_without(weights, "1.1.0", None, set(weights)) == {
        "0.9.0": 34,
        "1.0.0": 66,
    }
    assert rollback.weights_without({"1.1.0": 100}, "1.1.0", None, {"1.1.0"}) == {}


def _action(kind: t.ActionKind, after: dict[str, object]) -> t.Action:
    return t.Action(
        id=f"m/{kind}",
        address="version.m@1.1.0",
        kind=kind,
        symbol=t.ChangeSymbol.CREATE,
        after=after,
    )


def _plan(*actions: t.Action) -> t.Plan:
    return t.Plan(
        created_at="x", workspace="w", spec_digest="d", state_fingerprint="f", actions=list(actions)
    )


def test_deployment_is_rebuilt_from_the_plan_payloads() -> None:
    register: dict[str, object] = {
        "semver": "1.1.0",
        "artifact": "models/m.onnx",
        "sha256": None,
        "validation": "data/v.npz",
    }
    plan = _plan(
        _action(t.ActionKind.REGISTER, register),
        _action(
            t.ActionKind.CONFORMANCE_TEST,
            {
                "semver": "1.1.0",
                "metric": "accuracy",
                "baseline": 0.95,
                "tolerance": 0.01,
                "p99_ms": 12.0,
                "max_increase": 0.2,
            },
        ),
        _action(
            t.ActionKind.LOAD,
            {"semver": "1.1.0", "settings": {"signature": SIGNATURE}, "replicas": 1},
        ),
    )
    deployment = rebuild.deployment_for(plan, "m", "1.1.0", register)
    model = deployment.spec.model
    assert deployment.name == "m" and model.version == "1.1.0"
    assert model.baseline.value == 0.95 and model.baseline.p99_ms == 12.0
    assert model.validation is not None and model.validation.tolerance == 0.01
    assert model.signature.inputs[0].name == "input"


def test_a_plan_without_signature_cannot_register() -> None:
    register: dict[str, object] = {
        "semver": "1.1.0",
        "artifact": "models/m.onnx",
        "sha256": None,
        "validation": None,
    }
    with pytest.raises(errors.PlanError, match="signature and baseline"):
        rebuild.deployment_for(
            _plan(_action(t.ActionKind.REGISTER, register)), "m", "1.1.0", register
        )
