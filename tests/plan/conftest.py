"""Fixtures for the plan CLI tests: real ONNX models from the example trainer, a workspace
with a real MLflow sqlite registry, and an in-process runner of the real `mlops` entry point."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops import workspace as ws_mod
from mlops.plan import payloads
from mlops.providers import factory
from mlops.providers.engine.runtime import LocalRuntime
from mlops.spec import load
from mlops.state import applied
from mlops.state import models as state
from tests import support
from tests.runtime.support import free_port
from tests.support import Runner

ROOT = Path(__file__).resolve().parents[2]
TRAINER = ROOT / "examples" / "train.py"
EXAMPLE_SPEC = ROOT / "specs" / "fraud-scorer.yaml"


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/fraud-scorer-{1.0.0,1.1.0}.onnx and data/fraud-scorer-val.npz, trained once."""
    out = tmp_path_factory.mktemp("trained")
    for version in ("1.0.0", "1.1.0"):
        subprocess.run(
            [sys.executable, str(TRAINER), "--version", version, "--out", str(out)],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return out


@pytest.fixture(scope="session")
def empty_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised, empty MLflow sqlite database: creating one runs every schema
    migration (seconds), so the tests copy this one instead."""
    from mlops import workspace as ws_mod
    from mlops.providers import factory
    from mlops.providers.mlflow import registry as mlflow_registry

    root = tmp_path_factory.mktemp("registry")
    registry = factory.registry(ws_mod.open_workspace(root))
    assert isinstance(registry, mlflow_registry.MlflowRegistry)
    registry.initialise()  # reads never create the database
    return root / ".mlops" / "mlflow.db"


@pytest.fixture
def workspace(tmp_path: Path, trained: Path, empty_registry: Path) -> Path:
    """A workspace with the example spec (1.0.0), its artifacts and an empty registry."""
    root = tmp_path / "ws"
    (root / "specs").mkdir(parents=True)
    (root / ".mlops").mkdir()
    shutil.copy(empty_registry, root / ".mlops" / "mlflow.db")
    (root / "mlops.yaml").write_text("target: local\n")
    shutil.copytree(trained / "models", root / "models")
    shutil.copytree(trained / "data", root / "data")
    shutil.copy(EXAMPLE_SPEC, root / "specs" / "fraud-scorer.yaml")
    return root


@pytest.fixture
def mlops(
    workspace: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Runner:
    """Run the real `mlops` entry point in-process from inside the workspace."""
    monkeypatch.chdir(workspace)
    monkeypatch.setenv("NO_COLOR", "1")

    return support.cli_runner(capsys)


def set_version(spec_file: Path, version: str, replace: dict[str, str] | None = None) -> None:
    """Point the spec at another version (and its artifact), with optional text replacements."""
    text = spec_file.read_text()
    text = text.replace("version: 1.0.0", f"version: {version}")
    text = text.replace("fraud-scorer-1.0.0.onnx", f"fraud-scorer-{version}.onnx")
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    spec_file.write_text(text)


@pytest.fixture
def serving(workspace: Path) -> Iterator[LocalRuntime]:
    """The workspace's engine running 1.0.0 at 100%, as a finished apply leaves it."""
    from tests.plan.test_cli import register

    (workspace / "mlops.yaml").write_text(f"target: local\nserve: {{port: {free_port()}}}\n")
    register(workspace)
    ws = ws_mod.open_workspace(workspace)
    (item,) = load.load_specs([workspace / "specs"], workspace)
    runtime = LocalRuntime(ws)
    runtime.start(1)
    try:
        artifact = factory.registry(ws).artifact_path("fraud-scorer", "1.0.0")
        runtime.load("fraud-scorer", "1.0.0", artifact, payloads.engine_settings(item.deployment))
        runtime.set_traffic("fraud-scorer", {"1.0.0": 100}, None)
        applied.update(
            applied.path_in(ws.state_dir),
            "fraud-scorer",
            state.AppliedRecord(
                loaded=["1.0.0"], weights={"1.0.0": 100}, aliases={"stable": "1.0.0"}
            ),
        )
        yield runtime
    finally:
        runtime.stop()
