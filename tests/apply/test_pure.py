"""Pure helpers of apply: the weight table after a rollback, the spec rebuilt from a plan."""

from __future__ import annotations

import pydantic
import pytest

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


def test_deployment_is_rebuilt_from_the_register_payload_alone() -> None:
    register = t.RegisterPayload.model_validate(
        {
            "semver": "1.1.0",
            "artifact": "models/m.onnx",
            "sha256": None,
            "signature": SIGNATURE,
            "baseline": {"metric": "accuracy", "value": 0.95, "p99_ms": 12.0},
            "validation": {"data": "data/v.npz", "tolerance": 0.01},
        }
    )
    deployment = rebuild.deployment_for("m", register)
    model = deployment.spec.model
    assert deployment.name == "m" and model.version == "1.1.0"
    assert model.baseline.value == 0.95 and model.baseline.p99_ms == 12.0
    assert model.validation is not None and model.validation.tolerance == 0.01
    assert model.validation.data == "data/v.npz"
    assert model.signature.inputs[0].name == "input"


def test_a_register_payload_without_signature_is_not_a_plan() -> None:
    # Before, the signature came from another action of the plan, and a plan without one
    # failed only when apply reached the register step.
    with pytest.raises(pydantic.ValidationError, match="signature"):
        t.Action(
            id="m/01-register",
            address="version.m@1.1.0",
            kind=t.ActionKind.REGISTER,
            symbol=t.ChangeSymbol.CREATE,
            after={"semver": "1.1.0", "artifact": "models/m.onnx", "sha256": None},
        )
