"""The spec fields the registry records, rebuilt from a plan's own payloads.

Apply reads only the plan: registration needs the signature (in the load payload) and the
baseline (in the conformance payload) besides the register payload itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlops import core, errors
from mlops.plan import types as t
from mlops.spec import models as spec

K = t.ActionKind


def deployment_for(
    plan: t.Plan, model: str, semver: str, register: Mapping[str, Any]
) -> spec.ModelDeployment:
    """The spec fields the registry records, rebuilt from the plan itself (the load payload
    carries the signature, the conformance payload the baseline): apply reads only the plan."""
    signature: Any = None
    baseline: dict[str, Any] = {}
    for action in plan.actions:
        after = action.after or {}
        if core.Address(action.address).model != model or after.get("semver") != semver:
            continue
        if action.kind in (K.LOAD, K.UPDATE_CONFIG):
            signature = (after.get("settings") or {}).get("signature")
        elif action.kind is K.CONFORMANCE_TEST:
            baseline = {
                "metric": after.get("metric", "accuracy"),
                "value": after.get("baseline"),
                "p99_ms": after.get("p99_ms"),
                "tolerance": after.get("tolerance"),
            }
    if signature is None or baseline.get("value") is None:
        raise errors.PlanError(
            f"{model}@{semver}: the plan registers it without its signature and baseline"
        )
    validation = register.get("validation")
    model_section: dict[str, Any] = {
        "version": semver,
        "artifact": register["artifact"],
        "sha256": register.get("sha256"),
        "signature": signature,
        "baseline": {k: baseline[k] for k in ("metric", "value", "p99_ms")},
    }
    if validation:
        model_section["validation"] = {
            "data": validation,
            **(
                {"tolerance": baseline["tolerance"]}
                if baseline.get("tolerance") is not None
                else {}
            ),
        }
    return spec.ModelDeployment.model_validate(
        {
            "apiVersion": spec.API_VERSION,
            "kind": spec.KIND,
            "metadata": {"name": model},
            "spec": {"model": model_section},
        }
    )
