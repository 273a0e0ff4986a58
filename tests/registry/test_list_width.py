"""`mlops registry list` off a terminal prints whole columns (issue 10: piped output was cut
to rich's 80-column default, and some columns were dropped)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from mlops.providers.mlflow.registry import MlflowRegistry
from tests.registry import support
from tests.registry.test_cli import _run

LONG = "a-rather-long-model-name-for-the-fraud-scoring-team-eu-west-1"
SEMVER = "10.20.30-rc.1"


def _filled(ws: Path, sqlite_template: Path) -> MlflowRegistry:
    (ws / ".mlops").mkdir(parents=True)
    shutil.copyfile(sqlite_template, ws / ".mlops" / "mlflow.db")
    registry = MlflowRegistry(
        f"sqlite:///{ws / '.mlops' / 'mlflow.db'}", ws / ".mlops" / "artifacts", workspace=ws
    )
    registry.register(support.deployment(LONG, SEMVER), Path("models/model.onnx"), None)
    registry.set_alias(LONG, "stable", SEMVER)
    registry.set_alias(LONG, "canary", SEMVER)
    return registry


def test_list_output_off_a_terminal_is_never_cut(ws: Path, sqlite_template: Path) -> None:
    registry = _filled(ws, sqlite_template)
    version = registry.get_version(LONG, SEMVER)
    assert version is not None and version.created_at
    # In-process (not a terminal) and through a real pipe, as `| less` or a CI log gets it.
    _, in_process, _ = _run("-C", str(ws), "registry", "list")
    entry = [sys.executable, "-c", "from mlops.cli import main; main()"]
    piped = subprocess.run(
        [*entry, "-C", str(ws), "registry", "list"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert piped.returncode == 0, piped.stderr
    for out in (in_process, piped.stdout):
        assert "…" not in out
        header, row = out.strip().splitlines()
        assert header.split() == ["MODEL", "VERSION", "#", "STATUS", "ALIASES", "SHA256", "CREATED"]
        assert row.split() == [
            LONG,
            SEMVER,
            version.registry_version,
            "registered",
            "canary,stable",
            version.sha256[:12],
            version.created_at[:19],
        ]
