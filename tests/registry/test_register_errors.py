"""Registering an unusable artifact through `mlops apply`: one line naming the user's file (not
the private copy registration checks), advice that does not promise a re-run can succeed,
exit 1, and nothing created in the registry."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from mlops import errors
from mlops.apply import executor
from mlops.plan import types as t
from mlops.providers.mlflow.registry import MlflowRegistry
from tests.registry import support

BAD = "models/bad.onnx"


def _truncated(path: Path, models: Path) -> None:
    data = (models / "model.onnx").read_bytes()
    path.write_bytes(data[: len(data) // 2])


BROKEN: dict[str, Callable[[Path, Path], object]] = {
    "empty": lambda path, models: path.write_bytes(b""),
    "not-onnx": lambda path, models: path.write_text("name,score\na,1\n"),
    "truncated": _truncated,
}


@pytest.fixture
def workspace(ws: Path, sqlite_template: Path) -> Path:
    """A workspace whose registry already holds another model, and a spec for `badm`."""
    (ws / ".mlops").mkdir(parents=True)
    shutil.copyfile(sqlite_template, ws / ".mlops" / "mlflow.db")
    (ws / "mlops.yaml").write_text("target: local\n")
    _registry(ws).register(support.deployment("other", "1.0.0"), Path("models/model.onnx"), None)
    (ws / "specs").mkdir()
    deployment = support.deployment("badm", "1.0.0", artifact=f"../{BAD}")
    document = deployment.model_dump(mode="json", by_alias=True, exclude_none=True)
    (ws / "specs" / "badm.yaml").write_text(yaml.safe_dump(document))
    return ws


def _registry(ws: Path) -> MlflowRegistry:
    db = ws / ".mlops" / "mlflow.db"
    return MlflowRegistry(f"sqlite:///{db}", ws / ".mlops" / "artifacts", workspace=ws)


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_unusable_artifact_fails_once_with_the_users_path(
    workspace: Path, models_dir: Path, kind: str
) -> None:
    BROKEN[kind](workspace / BAD, models_dir)
    done = subprocess.run(
        [sys.executable, "-m", "mlops", "-C", str(workspace), "apply", "--auto-approve"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("Error:")]
    assert line == done.stderr.splitlines()[-1]
    assert f"artifact {str(workspace / BAD)!r}" in line
    assert "not an ONNX model" in line
    assert "mlops-register" not in done.stderr  # the private copy is never named
    assert "re-run" not in line and "resume" not in line
    assert "nothing was registered" in line
    registry = _registry(workspace)
    assert list(registry.refresh()) == ["other"]
    assert not list(registry.session.all_versions(["badm"]))
    assert "badm" not in registry.session.all_aliases()


def test_transient_and_permanent_failures_get_different_advice() -> None:
    register, traffic = t.ActionKind.REGISTER, t.ActionKind.SET_TRAFFIC
    transient = executor._advice(
        errors.TransientError("registry unreachable"), register, "m", served=False
    )
    assert "re-run the same apply to resume" in transient
    for permanent in (
        errors.ArtifactError("not an ONNX model"),
        errors.SignatureMismatchError("signature mismatch"),
        errors.VersionConflictError("m@1.0.0 is already registered"),
    ):
        advice = executor._advice(permanent, register, "m", served=False)
        assert "re-run" not in advice and "nothing was registered" in advice
        later = executor._advice(permanent, traffic, "m", served=True)
        assert "re-run" not in later and "mlops rollback m" in later
        for early in (t.ActionKind.VERIFY, t.ActionKind.BUILD_IMAGE, t.ActionKind.PUSH_IMAGE):
            # Before this run loaded or routed the model there is nothing to roll back ...
            advice = executor._advice(permanent, early, "m", served=False)
            assert "rollback" not in advice and "has not loaded or routed m" in advice, advice
            # ... after it did (a verify that follows a reload), rolling back is an option.
            advice = executor._advice(permanent, early, "m", served=True)
            assert "mlops rollback m" in advice, advice
    pushing = executor._advice(
        errors.TransientError("registry down"), t.ActionKind.PUSH_IMAGE, "m", served=False
    )
    assert "re-run the same apply to resume" in pushing and "rollback" not in pushing
