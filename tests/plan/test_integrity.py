"""Released versions are immutable: served bytes that are not the registered ones are an outside
change the plan repairs (issue 9 #3), and a spec artifact whose bytes differ from the
registered version of the same semver is a plan error naming both digests (issue 9 #4)."""

from __future__ import annotations

import hashlib
import json
import shutil
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlops.plan import diff
from mlops.plan import types as t
from mlops.providers.engine.runtime import LocalRuntime
from mlops.state import models as state
from tests.support import Runner

from . import helpers as h
from .test_cli import SPEC, register

GOOD = "a" * 64
BAD = "b" * 64
K = t.ActionKind


def _live(
    served: dict[str, list[str]] | None, *, canary: str | None = None
) -> tuple[state.LiveState, Any]:
    stable = h.deployment(version="1.0.0")
    versions = [h.reg_version(stable)]
    aliases = {"stable": "1.0.0"}
    weights = {"1.0.0": 100}
    if canary is not None:
        versions.append(h.reg_version(h.deployment(version=canary)))
        aliases["canary"] = canary
        weights = {"1.0.0": 95, canary: 5}
    runtime = h.runtime("fraud", weights).model_copy(update={"served_sha256": served or {}})
    live = state.LiveState(
        registry={"fraud": h.registry(*versions, **aliases)},
        runtime={"fraud": runtime},
        last_applied={
            "fraud": state.AppliedRecord(loaded=list(weights), weights=weights, aliases=aliases)
        },
    )
    return live, stable


# -- the diff (pure) -----------------------------------------------------------------------------


def test_served_bytes_equal_to_the_registry_are_no_change() -> None:
    live, dep = _live({"1.0.0": [GOOD]})
    plan = h.plan([dep], live)
    assert plan.actions == [] and plan.outside_changes == [] and plan.errors == []


def test_a_runtime_that_reports_no_digest_has_nothing_to_compare() -> None:
    live, dep = _live(None)
    plan = h.plan([dep], live)
    assert plan.actions == [] and plan.outside_changes == []


def test_other_served_bytes_are_an_outside_change_that_the_plan_repairs() -> None:
    live, dep = _live({"1.0.0": [BAD]})
    plan = h.plan([dep], live)
    (change,) = plan.outside_changes
    assert change.address == "version.fraud@1.0.0" and change.field == "sha256"
    assert (change.expected, change.actual) == (GOOD, BAD)
    verify, reload = plan.actions
    assert verify.kind is K.VERIFY and verify.after == t.VerifyPayload(semver="1.0.0", sha256=GOOD)
    assert reload.kind is K.LOAD and reload.symbol is t.ChangeSymbol.REPLACE
    assert reload.address == "version.fraud@1.0.0"
    # The settings carry the digest the engine must serve: a reload, never a no-op.
    assert isinstance(reload.after, t.LoadPayload) and reload.after.settings.sha256 == GOOD
    assert BAD in reload.reason and GOOD in reload.reason and "reload" in reload.reason
    change_of_model = plan.models["fraud"]
    assert change_of_model.strategy == "restore" and "other bytes" in change_of_model.reason
    assert (plan.summary.add, plan.summary.destroy) == (1, 1)  # replaced, Terraform-style


def test_replicas_that_disagree_are_all_shown() -> None:
    live, dep = _live({"1.0.0": [GOOD, BAD]})
    plan = h.plan([dep], live)
    (change,) = plan.outside_changes
    assert change.actual == [GOOD, BAD]
    assert [a.kind for a in plan.actions] == [K.VERIFY, K.LOAD]


def test_a_tampered_canary_in_progress_is_reloaded_before_the_rollout_goes_on() -> None:
    live, _ = _live({"1.0.0": [GOOD], "1.1.0": [BAD]}, canary="1.1.0")
    plan = h.plan([h.deployment(version="1.1.0")], live)
    assert [c.address for c in plan.outside_changes] == ["version.fraud@1.1.0"]
    kinds = [(a.kind, a.address) for a in plan.actions]
    assert kinds[:2] == [(K.VERIFY, "version.fraud@1.1.0"), (K.LOAD, "version.fraud@1.1.0")]
    assert plan.actions[1].symbol is t.ChangeSymbol.REPLACE
    # Nothing else is reloaded: the stable version serves its registered bytes.
    assert [a for a in plan.actions if a.kind is K.LOAD] == [plan.actions[1]]


def test_a_tampered_stable_is_reloaded_during_a_rollout() -> None:
    live, _ = _live({"1.0.0": [BAD], "1.1.0": [GOOD]}, canary="1.1.0")
    plan = h.plan([h.deployment(version="1.1.0")], live)
    loads = [a for a in plan.actions if a.kind is K.LOAD]
    assert [a.address for a in loads] == ["version.fraud@1.0.0"]
    assert isinstance(loads[0].after, t.LoadPayload) and loads[0].after.settings.sha256 == GOOD


def test_unpinned_artifact_with_other_bytes_than_the_registered_semver_is_an_error() -> None:
    live, dep = _live({"1.0.0": [GOOD]})
    desired = h.desired(dep)
    plan = diff.diff(
        [replace(desired, artifact_sha256=BAD)],
        live,
        workspace="/ws",
        created_at=h.CREATED_AT,
        spec_digest="d",
    )
    (error,) = plan.errors
    assert GOOD in error and BAD in error and "1.0.0" in error
    assert "immutable" in error and plan.actions == []


def test_unpinned_artifact_with_the_registered_bytes_is_fine() -> None:
    live, dep = _live({"1.0.0": [GOOD]})
    plan = diff.diff(
        [replace(h.desired(dep), artifact_sha256=GOOD)],
        live,
        workspace="/ws",
        created_at=h.CREATED_AT,
        spec_digest="d",
    )
    assert plan.errors == [] and plan.actions == []


# -- through the CLI, with the real engine and MLflow on sqlite ----------------------------------


def _sha(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _probabilities(runtime: LocalRuntime, rows: np.ndarray[Any, Any]) -> list[float]:
    body = {
        "inputs": [
            {
                "name": "input",
                "datatype": "FP32",
                "shape": list(rows.shape),
                "data": rows.ravel().tolist(),
            }
        ],
        "outputs": [{"name": "probabilities"}],
    }
    request = urllib.request.Request(
        f"{runtime.inference_url()}/v2/models/fraud-scorer/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        (output,) = json.loads(response.read())["outputs"]
    return [round(float(x), 5) for x in output["data"]]


@pytest.mark.slow
def test_tampered_staged_model_is_planned_repaired_and_served_right(
    mlops: Runner, workspace: Path, serving: LocalRuntime
) -> None:
    rows = np.random.default_rng(7).normal(size=(8, 30)).astype(np.float32)
    right = _probabilities(serving, rows)
    staged = serving.process.repository / "fraud-scorer" / "1.0.0" / "model.onnx"
    registered = _sha(staged)
    # Another valid model of the same signature, staged by hand; a restarted engine loads it.
    serving.stop()
    shutil.copyfile(workspace / "models" / "fraud-scorer-1.1.0.onnx", staged)
    tampered = _sha(staged)
    serving.start(1)
    # The engine refuses bytes that are not the staged digest (or, one that does not check,
    # serves them): either way it does not answer with the registered model.
    try:
        assert _probabilities(serving, rows) != right
    except urllib.error.HTTPError as exc:
        assert exc.code in (404, 503)

    result = mlops("plan", "--detailed-exitcode")
    assert result.code == 2, result.out + result.err
    assert "~ version.fraud-scorer@1.0.0: sha256" in result.out
    assert f'expected: "{registered}"' in result.out and f'actual:   "{tampered}"' in result.out
    assert "-/+ load" in result.out and "version.fraud-scorer@1.0.0" in result.out

    applied_run = mlops("apply", "--auto-approve")
    assert applied_run.code == 0, applied_run.out + applied_run.err
    assert _sha(staged) == registered
    assert _probabilities(serving, rows) == right
    after = mlops("plan", "--detailed-exitcode")
    assert after.code == 0, after.out + after.err
    assert "No changes." in after.out


@pytest.mark.slow
def test_same_semver_with_other_bytes_and_no_pin_is_a_plan_error(
    mlops: Runner, workspace: Path
) -> None:
    register(workspace)
    artifact = workspace / "models" / "fraud-scorer-1.0.0.onnx"
    registered = _sha(artifact)
    shutil.copyfile(workspace / "models" / "fraud-scorer-1.1.0.onnx", artifact)
    changed = _sha(artifact)
    result = mlops("plan", "--detailed-exitcode")
    assert result.code == 1, result.out + result.err
    assert registered in result.err and changed in result.err
    assert "No changes" not in result.out
    assert (workspace / SPEC).is_file()
