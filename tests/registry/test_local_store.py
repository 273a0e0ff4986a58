"""Properties of the default local store (sqlite + artifacts in the workspace) that a remote
server hides: stored bytes and sources edited behind mlops' back are caught on read."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mlops import errors
from mlops.providers.mlflow import tags as mlflow_tags
from mlops.providers.mlflow.registry import MlflowRegistry
from tests.registry import support


@pytest.fixture
def local(ws: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch) -> MlflowRegistry:
    db = ws / ".mlops" / "mlflow.db"
    db.parent.mkdir(parents=True)
    shutil.copyfile(sqlite_template, db)
    monkeypatch.chdir(ws)  # anything MLflow would drop into ./mlruns would land here
    return MlflowRegistry(f"sqlite:///{db}", ws / ".mlops" / "artifacts", workspace=ws)


def test_artifacts_stay_under_the_workspace_state_dir(local: MlflowRegistry, ws: Path) -> None:
    version = local.register(support.deployment("fraud", "1.0.0"), Path("models/model.onnx"), None)
    stored = local.artifact_path("fraud", "1.0.0")
    assert (ws / ".mlops" / "artifacts").resolve() in stored.resolve().parents
    assert version.artifact_uri == stored.resolve().as_uri()
    assert not (ws / "mlruns").exists()


def test_tampered_artifact_is_refused(local: MlflowRegistry) -> None:
    local.register(support.deployment("fraud", "1.0.0"), Path("models/model.onnx"), None)
    local.artifact_path("fraud", "1.0.0").write_bytes(b"swapped")
    with pytest.raises(errors.ArtifactError, match="does not match its sha256"):
        local.artifact_path("fraud", "1.0.0")


@pytest.mark.parametrize("source", ["file:///etc", "/etc", "file:///tmp/#/../etc"])
def test_version_pointing_outside_the_store_is_refused(local: MlflowRegistry, source: str) -> None:
    """A version written by hand into MLflow, with mlops tags, whose source is elsewhere."""
    good = local.register(support.deployment("fraud", "1.0.0"), Path("models/model.onnx"), None)
    client = local.session.client
    tags = mlflow_tags.version_tags(
        "6.6.6", good.sha256, good.signature, good.baseline, stats=False
    )
    made = client.create_model_version(
        "fraud", source, tags={**tags, mlflow_tags.STATE: mlflow_tags.READY}
    )
    client.set_registered_model_alias("fraud", mlflow_tags.semver_alias("6.6.6"), made.version)
    with pytest.raises(errors.RegistryError):
        local.artifact_path("fraud", "6.6.6")
