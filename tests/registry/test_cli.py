"""`mlops registry list|show` end to end through the CLI entry point, and an unreachable
registry (a dead loopback port) failing fast with one clear line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlops import errors
from mlops.cli import cli
from mlops.providers.mlflow.registry import MlflowRegistry
from tests.registry import support
from tests.registry.conftest import free_port


def _run(*args: str) -> tuple[int, str, str]:
    """In-process run; an MlopsError maps to its exit code as `mlops.cli.main` does."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=True)
    if isinstance(result.exception, errors.MlopsError):
        return result.exception.exit_code, result.stdout, str(result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def filled(ws: Path, sqlite_template: Path) -> Path:
    (ws / ".mlops").mkdir(parents=True)
    shutil.copyfile(sqlite_template, ws / ".mlops" / "mlflow.db")
    registry = MlflowRegistry(
        f"sqlite:///{ws / '.mlops' / 'mlflow.db'}", ws / ".mlops" / "artifacts", workspace=ws
    )
    registry.register(support.deployment("fraud-scorer", "2.3.0"), Path("models/model.onnx"), None)
    registry.register(
        support.deployment("fraud-scorer", "2.3.1"),
        Path("models/other.onnx"),
        Path("models/val.npz"),
    )
    registry.set_alias("fraud-scorer", "stable", "2.3.0")
    registry.set_alias("fraud-scorer", "canary", "2.3.1")
    registry.mark_rejected("fraud-scorer", "2.3.1", "latency_p99 +35% at weight 10")
    return ws


def test_list_and_show_json(filled: Path) -> None:
    code, out, _ = _run("-C", str(filled), "registry", "list", "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["format_version"] == 1
    (model,) = doc["models"]
    assert model["aliases"] == {"canary": "2.3.1", "stable": "2.3.0"}
    assert [v["semver"] for v in model["versions"]] == ["2.3.0", "2.3.1"]
    code, out, _ = _run(
        "-C", str(filled), "registry", "show", "fraud-scorer@2.3.1", "--format", "json"
    )
    (version,) = json.loads(out)["model"]["versions"]
    assert code == 0 and version["status"] == "rejected" and version["aliases"] == ["canary"]
    assert version["rejected_reason"] == "latency_p99 +35% at weight 10"
    assert version["signature"]["inputs"][0] == {"name": "input", "dtype": "FP32", "shape": [-1, 4]}
    assert len(version["sha256"]) == 64 and version["baseline"]["value"] == 0.94


def test_list_and_show_text(filled: Path) -> None:
    code, out, _ = _run("-C", str(filled), "registry", "list")
    assert code == 0 and "fraud-scorer" in out and "rejected" in out and "stable" in out
    code, out, _ = _run("-C", str(filled), "registry", "show", "fraud-scorer")
    assert code == 0
    for expected in ("2.3.0", "2.3.1", "probabilities", "INT64", "latency_p99 +35%", "p99 15"):
        assert expected in out


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("nope", "'nope' is not registered"),
        ("fraud-scorer@9.9.9", "fraud-scorer@9.9.9 is not registered"),
        ("Fraud!", "invalid model name"),
        ("fraud-scorer@", "NAME or NAME@VERSION"),
        ("fraud-scorer@2.3", "invalid semantic version"),
    ],
)
def test_show_errors(filled: Path, ref: str, message: str) -> None:
    code, _, err = _run("-C", str(filled), "registry", "show", ref)
    assert code == 1 and message in err


def test_help_has_examples() -> None:
    for args in (
        ["registry", "--help"],
        ["registry", "list", "--help"],
        ["registry", "show", "--help"],
    ):
        code, out, _ = _run(*args)
        assert code == 0 and "mlops registry" in out and "Example" in out


def test_unreachable_registry_is_a_transient_error(ws: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    registry = MlflowRegistry(url, ws / ".mlops" / "artifacts", workspace=ws)
    with pytest.raises(errors.TransientError, match="unreachable"):
        registry.refresh()
    with pytest.raises(errors.TransientError, match="unreachable"):
        registry.register(support.deployment("fraud", "1.0.0"), Path("models/model.onnx"), None)
    (ws / "mlops.yaml").write_text(f"registry_uri: {url}\n")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "mlops"), "-C", str(ws), "registry", "list"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("Error: registry http://127.0.0.1:")
    assert "unreachable" in done.stderr and done.stderr.count("\n") == 1
