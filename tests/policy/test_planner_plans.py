"""The default policy over plans made by the real planner (mlops.plan.diff), so that what
policy reads from actions stays in step with what the planner writes."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
import yaml

from mlops.plan import diff
from mlops.plan import types as t
from mlops.policy import evaluate, facts, load, rules
from mlops.spec import models as spec
from mlops.state import models as state

SPEC = """
apiVersion: mlops/v1
kind: ModelDeployment
metadata: {name: fraud}
spec:
  model:
    version: VERSION
    artifact: models/fraud.onnx
    sha256: "SHA"
    signature:
      inputs:  [{name: input, dtype: FP32, shape: [-1, 4]}]
      outputs: [{name: score, dtype: FP32, shape: [-1, 2]}]
    baseline: {metric: accuracy, value: 0.94, p99_ms: 15}
  rollout:
    strategy: canary
    steps: [{weight: 5, hold: 5m}, {weight: 10, hold: 10m}, {weight: 50, hold: 15m}, {weight: 100}]
"""


def deployment(version: str, **rollout: Any) -> spec.ModelDeployment:
    data = yaml.safe_load(
        textwrap.dedent(SPEC).replace("VERSION", version).replace("SHA", "a" * 64)
    )
    data["spec"]["rollout"].update(rollout)
    return spec.ModelDeployment.model_validate(data)


def live(
    stable: str | None, weights: dict[str, int] | None = None, canary: str | None = None
) -> state.LiveState:
    if stable is None:
        return state.LiveState()
    versions = {
        v: _registered(v) for v in {stable, *(weights or {}), *([canary] if canary else [])}
    }
    aliases = {"stable": stable, **({"canary": canary} if canary else {})}
    weights = weights or {stable: 100}
    return state.LiveState(
        registry={"fraud": state.RegistryModel(name="fraud", versions=versions, aliases=aliases)},
        runtime={
            "fraud": state.RuntimeModel(
                name="fraud",
                loaded={v: "ready" for v in weights},
                weights=weights,
                replicas=1,
                replicas_alive=1,
            )
        },
    )


def _registered(version: str) -> state.RegistryVersion:
    dep = deployment(version)
    return state.RegistryVersion(
        name="fraud",
        semver=version,
        registry_version="1",
        sha256="a" * 64,
        artifact_uri="models:/fraud/1",
        signature=dep.spec.model.signature,
        baseline=dep.spec.model.baseline,
        status=state.VersionStatus.CONFORMANT,
    )


def make_plan(deps: list[spec.ModelDeployment], snapshot: state.LiveState, **kw: Any) -> t.Plan:
    desired = [diff.Desired(deployment=d, artifact=d.spec.model.artifact) for d in deps]
    return diff.diff(
        desired, snapshot, workspace="/ws", created_at="2026-01-01T00:00:00Z", spec_digest="d", **kw
    )


def check(the_plan: t.Plan) -> dict[str, str]:
    """rule id -> severity of each violation of the default policy."""
    result = evaluate.evaluate(the_plan, load.load_builtin().rules)
    return {v.rule: str(v.severity) for v in result.violations}


def test_canary_update_passes_the_default_policy() -> None:
    the_plan = make_plan([deployment("1.1.0")], live("1.0.0"))
    found = facts.model_facts(the_plan)["fraud"]
    assert found.strategy is rules.RolloutStrategy.CANARY
    assert (found.previous_version, found.new_version) == ("1.0.0", "1.1.0")
    assert [(s.weight, s.hold) for s in found.steps] == [(5, 300.0), (10, 600.0), (50, 900.0)]
    assert check(the_plan) == {}


def test_immediate_update_fails() -> None:
    the_plan = make_plan([deployment("1.1.0", strategy="immediate")], live("1.0.0"))
    assert facts.model_facts(the_plan)["fraud"].strategy is rules.RolloutStrategy.IMMEDIATE
    found = check(the_plan)
    assert found["no-immediate-updates"] == "error"
    assert found["small-first-step"] == "error"
    assert found["gated-rollouts"] == "error"


def test_first_deployment_passes() -> None:
    the_plan = make_plan([deployment("1.0.0")], live(None))
    found = facts.model_facts(the_plan)["fraud"]
    assert found.previous_version is None and not found.is_update
    assert check(the_plan) == {}


@pytest.mark.parametrize(("strategy", "warned"), [("canary", True), ("shadow", False)])
def test_major_versions_want_a_shadow_phase(strategy: str, warned: bool) -> None:
    extra = {"shadow": {"percent": 100, "hold": "10m"}} if strategy == "shadow" else {}
    the_plan = make_plan([deployment("2.0.0", strategy=strategy, **extra)], live("1.0.0"))
    assert ("shadow-major-versions" in check(the_plan)) is warned


def test_short_holds_and_big_jumps_warn() -> None:
    steps = [{"weight": 5, "hold": "30s"}, {"weight": 100}]
    the_plan = make_plan([deployment("1.1.0", steps=steps)], live("1.0.0"))
    found = check(the_plan)
    assert found == {
        "enough-steps": "warning",
        "gradual-steps": "warning",
        "long-enough-holds": "warning",
    }


def test_delete_warns() -> None:
    # Only models mlops applied itself (last_applied) are deleted when their spec goes.
    snapshot = live("1.0.0").model_copy(update={"last_applied": {"fraud": state.AppliedRecord()}})
    the_plan = make_plan([], snapshot, allow_delete=True)
    assert check(the_plan) == {"loud-deletes": "warning"}


def test_resumed_rollout_is_not_judged_on_its_start() -> None:
    snapshot = live("1.0.0", weights={"1.0.0": 50, "1.1.0": 50}, canary="1.1.0")
    the_plan = make_plan([deployment("1.1.0")], snapshot)
    found = facts.model_facts(the_plan)["fraud"]
    assert found.continuing and found.strategy is rules.RolloutStrategy.CANARY
    assert [s.weight for s in found.steps] == [50]
    assert check(the_plan) == {}
