"""Changes of serving.hardware and serving.autoscaling are planned (in place on the local
target, a rolling replace on kubernetes), and a missing local accelerator is never silent."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from mlops.plan import diff, steady
from mlops.plan import types as t
from mlops.providers.engine import accelerators
from mlops.spec import models as spec
from mlops.state import models as state
from tests.support import Runner

from . import helpers as h
from .test_diff import STABLE_V1, V1

BIGGER = h.deployment(version="1.0.0", extra="serving: {hardware: {cpu: 2, memory: 2Gi}}")
SCALED = h.deployment(
    version="1.0.0", extra="serving: {autoscaling: {metric: queue_depth, target: 8}}"
)
ENGINE = STABLE_V1.model_copy(update={"engine": state.EngineState(replicas=1, models=["fraud"])})


def _plan(dep: spec.ModelDeployment, live: state.LiveState, served: spec.Serving | None) -> t.Plan:
    item = dataclasses.replace(h.desired(dep), served=served)
    return diff.diff([item], live, workspace="/ws", created_at=h.CREATED_AT, spec_digest="d")


def test_hardware_change_on_the_local_engine_is_an_in_place_update() -> None:
    plan = _plan(BIGGER, ENGINE, served=V1.spec.serving)
    (action,) = plan.actions
    assert action.kind is t.ActionKind.UPDATE_CONFIG and action.symbol is t.ChangeSymbol.UPDATE
    assert "serving.hardware.cpu 1.0 -> 2.0" in action.reason
    assert "serving.hardware.memory 1Gi -> 2Gi" in action.reason
    change = plan.models["fraud"]
    assert change.strategy == "config" and change.reason.startswith("update in place: ")
    fraud = plan.capacity.models["fraud"]
    assert fraud.before.cpu == 1 and fraud.after.cpu == 2 and fraud.after.memory_gib == 2


def test_hardware_change_on_kubernetes_replaces_the_replicas() -> None:
    plan = _plan(BIGGER, STABLE_V1, served=V1.spec.serving)  # no shared engine: kubernetes
    (action,) = plan.actions
    assert action.kind is t.ActionKind.LOAD and action.symbol is t.ChangeSymbol.REPLACE
    assert "the replicas restart with it (rolling, traffic kept)" in action.reason
    assert isinstance(action.after, t.LoadPayload) and action.after.settings.sha256 == "a" * 64


def test_autoscaling_change_is_planned_with_its_reason() -> None:
    plan = _plan(SCALED, ENGINE, served=V1.spec.serving)
    (action,) = plan.actions
    assert action.kind is t.ActionKind.UPDATE_CONFIG
    assert "serving.autoscaling none -> queue_depth target 8" in action.reason
    assert plan.capacity.models["fraud"].autoscaling == SCALED.spec.serving.autoscaling


def test_nothing_to_compare_without_a_record_and_no_change_when_equal() -> None:
    assert _plan(BIGGER, ENGINE, served=None).actions == []
    assert _plan(BIGGER, ENGINE, served=BIGGER.spec.serving).actions == []
    assert steady.serving_changes(None, BIGGER.spec.serving) == []


@pytest.mark.parametrize(
    ("reported", "name"),
    [
        ("Tesla T4", "nvidia-t4"),
        ("NVIDIA A100-SXM4-40GB", "nvidia-a100"),
        ("NVIDIA GeForce RTX 4090", "nvidia-rtx"),
        ("NVIDIA L4", "nvidia-l4"),
    ],
)
def test_gpu_names_as_specs_write_them(reported: str, name: str) -> None:
    assert accelerators.name_of(reported) == name


def test_detection_is_honest_about_this_machine() -> None:
    found = accelerators.detect()
    if shutil.which("nvidia-smi") is None:
        assert found.gpus == () and "nvidia-smi: not installed" in found.how
        assert not found.has("nvidia-t4")
    assert "CPUExecutionProvider" in found.providers  # the engine's onnxruntime


@pytest.mark.slow
def test_a_local_gpu_spec_without_a_gpu_is_an_error_or_an_accepted_warning(
    mlops: Runner, workspace: Path
) -> None:
    found = accelerators.detect()
    if found.has("nvidia-t4"):
        pytest.skip("this machine has a usable nvidia-t4: nothing is missing")
    spec_file = workspace / "specs" / "fraud-scorer.yaml"
    text = spec_file.read_text()
    cpu_only = "hardware: {cpu: 1, memory: 1Gi, accelerator: none}"
    assert cpu_only in text
    spec_file.write_text(
        text.replace(cpu_only, "hardware: {cpu: 1, memory: 1Gi, accelerator: nvidia-t4, count: 1}")
    )
    refused = mlops("plan")
    assert refused.code == 1
    assert "fraud-scorer: serving.hardware asks for nvidia-t4 but this machine has none" in (
        refused.err
    )
    assert "--accept-missing-accelerator" in refused.err
    accepted = mlops("plan", "--accept-missing-accelerator")
    assert accepted.code == 0, accepted.err
    assert "the local engine would run it on the CPU (accepted" in accepted.out
    assert "1 nvidia-t4" in accepted.out  # the capacity block counts it
