"""`mlops plan` and `mlops show` through the real entry point, against a real MLflow sqlite
registry holding real ONNX models. The engine is not started: the runtime is unreachable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops import errors
from mlops import workspace as ws_mod
from mlops.plan import planfile
from mlops.providers import factory
from mlops.spec import load
from mlops.state import applied, refresh
from mlops.state import models as state
from tests.support import Runner

from .conftest import set_version

SPEC = Path("specs/fraud-scorer.yaml")


def register(root: Path, *, stable: bool = True) -> None:
    """Register what the workspace's specs declare (as apply would), optionally as stable."""
    ws = ws_mod.open_workspace(root)
    registry = factory.registry(ws)
    for item in load.load_specs([root / "specs"], root):
        assert item.artifact_path is not None
        registry.register(item.deployment, item.artifact_path, item.validation_path)
        if stable:
            registry.set_alias(item.name, "stable", item.deployment.spec.model.version)


def test_first_plan_and_exit_codes(mlops: Runner, workspace: Path) -> None:
    result = mlops("plan")
    assert result.code == 0, result.err
    assert "+ deployment.fraud-scorer  1.0.0  (first: 100%)" in result.out
    assert "no stable version to compare against" in result.out
    assert result.out.rstrip().endswith("Plan: 3 to add, 0 to change, 0 to destroy.")
    assert "runtime is not reachable" in result.out
    assert mlops("plan", "--detailed-exitcode").code == 2
    # plan never changes anything: nothing registered, no applied record, no plan file.
    assert factory.registry(ws_mod.open_workspace(workspace)).refresh() == {}
    assert not (workspace / ".mlops" / "applied.json").exists()


def test_saved_plan_renders_the_same_through_show(mlops: Runner, workspace: Path) -> None:
    printed = mlops("plan", "specs", "-o", "plans/release.json")
    assert printed.code == 0, printed.err
    assert "Saved the plan to: plans/release.json" in printed.err
    shown = mlops("show", "plans/release.json")
    assert shown.code == 0 and shown.out == printed.out
    document = json.loads(mlops("show", "plans/release.json", "--format", "json").out)
    assert document["summary"] == {"add": 3, "change": 0, "destroy": 0, "models": 1}
    assert document["workspace"] == str(workspace.resolve())
    assert document["actions"][0]["after"]["artifact"] == "models/fraud-scorer-1.0.0.onnx"
    markdown = mlops("show", "plans/release.json", "--format", "markdown").out
    assert markdown.startswith("### mlops plan: 3 to add, 0 to change, 0 to destroy")
    json_plan = mlops("plan", "--format", "json")
    assert json.loads(json_plan.out)["format_version"] == 2


def test_plan_file_outside_the_workspace_is_refused(
    mlops: Runner, workspace: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere.json"
    for target in (str(outside), "../elsewhere.json"):
        result = mlops("plan", "-o", target)
        assert result.code == 1
        assert "outside the workspace" in result.err and "Traceback" not in result.err
    assert not outside.exists() and not (workspace.parent / "elsewhere.json").exists()


def test_stable_version_with_engine_down_plans_a_reload(mlops: Runner, workspace: Path) -> None:
    register(workspace)
    result = mlops("plan")
    assert result.code == 0, result.err
    assert "load              version.fraud-scorer@1.0.0" in result.out
    assert "register" not in result.out and "conformance_test" not in result.out


def test_new_version_is_a_canary_with_gates(mlops: Runner, workspace: Path) -> None:
    register(workspace)
    set_version(workspace / SPEC, "1.1.0")
    result = mlops("plan")
    assert result.code == 0, result.err
    assert "-/+ deployment.fraud-scorer  1.0.0 -> 1.1.0  (canary: 10% -> 50% -> 100%)" in result.out
    assert "error_rate <= 0.01, latency_p99 <= +50% vs stable" in result.out
    assert "estimate: 20s of holds" in result.out


def test_rejected_version_is_refused(mlops: Runner, workspace: Path) -> None:
    register(workspace)
    set_version(workspace / SPEC, "1.1.0")
    register(workspace, stable=False)
    registry = factory.registry(ws_mod.open_workspace(workspace))
    registry.mark_rejected("fraud-scorer", "1.1.0", "error_rate 0.05 > 0.01")
    result = mlops("plan", "-o", "plans/p.json")
    assert result.code == 1
    assert "version 1.1.0 was rejected (error_rate 0.05 > 0.01)" in result.err
    assert "Traceback" not in result.err
    assert not (workspace / "plans").exists()


def test_breaking_signature_with_a_minor_bump_names_the_tensor(
    mlops: Runner, workspace: Path
) -> None:
    register(workspace)
    breaking = {
        "{name: input, dtype: FP32, shape: [-1, 30]}": "{name: input, dtype: FP64, shape: [-1, 30]}"
    }
    set_version(workspace / SPEC, "1.1.0", breaking)
    result = mlops("plan")
    assert result.code == 1
    assert "input 'input' dtype FP32 -> FP64" in result.err
    assert "major version bump" in result.err
    (workspace / "models" / "fraud-scorer-1.1.0.onnx").rename(
        workspace / "models" / "fraud-scorer-2.0.0.onnx"
    )
    text = (workspace / SPEC).read_text().replace("1.1.0", "2.0.0")
    (workspace / SPEC).write_text(text)
    assert mlops("plan").code == 0


def test_removed_spec_is_deleted_only_with_the_flag(mlops: Runner, workspace: Path) -> None:
    other = workspace / "specs" / "fraud-b.yaml"
    other.write_text((workspace / SPEC).read_text().replace("name: fraud-scorer", "name: fraud-b"))
    register(workspace)
    applied.update(
        applied.path_in(workspace / ".mlops"),
        "fraud-b",
        state.AppliedRecord(loaded=["1.0.0"], weights={"1.0.0": 100}, aliases={"stable": "1.0.0"}),
    )
    other.unlink()
    warned = mlops("plan", "--detailed-exitcode")
    assert "fraud-b is managed by mlops but has no spec: it is NOT deleted" in warned.out
    assert warned.code == 2  # fraud-scorer still needs its engine; fraud-b is only warned
    assert "DESTROYED" not in warned.out and "fraud-b/01-delete" not in warned.out
    deleted = mlops("plan", "--allow-delete", "--format", "json")
    kinds = [a["kind"] for a in json.loads(deleted.out)["actions"]]
    assert "delete" in kinds
    text = mlops("plan", "--allow-delete").out
    assert "deployment.fraud-b will be DESTROYED" in text


def test_stale_plan_is_detected(mlops: Runner, workspace: Path) -> None:
    register(workspace)
    assert mlops("plan", "-o", "plans/p.json").code == 0
    plan = planfile.load(workspace / "plans" / "p.json")
    ws = ws_mod.open_workspace(workspace)
    registry = factory.registry(ws)

    def live() -> state.LiveState:
        return refresh.refresh(registry, None, ["fraud-scorer"], {})

    planfile.check_fresh(plan, live())
    set_version(workspace / SPEC, "1.1.0")
    register(workspace, stable=False)  # someone registers 1.1.0 after the plan was made
    with pytest.raises(errors.StalePlanError, match=r"^plan is stale: "):
        planfile.check_fresh(plan, live())


def test_bad_input_is_one_line_and_exit_1(mlops: Runner, workspace: Path) -> None:
    (workspace / SPEC).write_text("apiVersion: mlops/v1\nkind: ModelDeployment\nmetadata: {}\n")
    result = mlops("plan")
    assert result.code == 1 and "Traceback" not in result.err
    assert "fraud-scorer.yaml:" in result.err
    (workspace / "broken.json").write_text("{nope")
    shown = mlops("show", "broken.json")
    assert shown.code == 1 and "not a plan file" in shown.err
    assert mlops("show", "absent.json").code == 1


def test_refresh_reads_each_provider_once(workspace: Path) -> None:
    """One batched registry read for any number of models, never one per model."""
    ws = ws_mod.open_workspace(workspace)
    real = factory.registry(ws)
    calls: list[object] = []

    class Counting:
        def __getattr__(self, name: str) -> object:
            calls.append(name)
            return getattr(real, name)

    names = ["fraud-scorer", *(f"model-{i}" for i in range(20))]
    live = refresh.refresh(Counting(), None, names, {})  # type: ignore[arg-type]
    assert calls == ["refresh"]
    assert live.runtime_reachable is False and live.runtime == {}


@pytest.mark.slow
def test_unreachable_registry_is_an_error(mlops: Runner, workspace: Path) -> None:
    (workspace / "mlops.yaml").write_text("registry_uri: http://127.0.0.1:9\n")
    result = mlops("plan")
    assert result.code == 1
    assert "unreachable" in result.err and "Traceback" not in result.err
