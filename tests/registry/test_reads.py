"""Registry reads: only the asked names come back, whether the registry is the workspace's
own (read whole) or shared (asked by name); a local sqlite registry that does not exist yet
reads as empty and is not created by reading: `mlops plan` on a fresh workspace changes
nothing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from mlops.providers.mlflow.registry import MlflowRegistry
from tests.registry import support
from tests.spec.conftest import good


def test_reads_of_a_missing_database_are_empty_and_create_nothing(tmp_path: Path) -> None:
    db = tmp_path / "state" / "mlflow.db"
    registry = MlflowRegistry(f"sqlite:///{db}", tmp_path / "artifacts")
    assert registry.refresh(["fraud-scorer"]) == {}
    assert registry.refresh() == {}
    assert registry.get_version("fraud-scorer", "1.0.0") is None
    assert not db.exists() and not db.parent.exists()
    registry.initialise()
    assert db.is_file()
    assert registry.refresh(["fraud-scorer"]) == {}


def test_relative_sqlite_uri_is_relative_to_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    registry = MlflowRegistry("sqlite:///sub/mlflow.db", tmp_path / "artifacts")
    assert registry.session.sqlite_file == Path("sub/mlflow.db")
    assert registry.refresh() == {} and not (tmp_path / "sub").exists()


def test_plan_on_a_fresh_workspace_creates_no_registry(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "specs").mkdir(parents=True)
    (root / "mlops.yaml").write_text("target: local\n")
    (root / "specs" / "fraud-scorer.yaml").write_text(good())
    result = subprocess.run(
        [sys.executable, "-m", "mlops", "-C", str(root), "plan", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert '"register"' in result.stdout  # everything is still to be registered
    assert not (root / ".mlops" / "mlflow.db").exists()


def test_refresh_returns_only_the_asked_names(
    registry: MlflowRegistry, name: Callable[[str], str]
) -> None:
    ours, other = name("ours"), name("other")
    for model in (ours, other):
        registry.register(support.deployment(model, "1.0.0"), Path("models/model.onnx"), None)
        registry.set_alias(model, "stable", "1.0.0")
    found = registry.refresh([ours, name("absent")])
    assert list(found) == [ours]
    assert found[ours].aliases == {"stable": "1.0.0"}
    assert {ours, other} <= set(registry.refresh())
