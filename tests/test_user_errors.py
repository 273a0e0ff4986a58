"""User errors across commands: one line on stderr, exit 1, no traceback, nothing created."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CASES = [
    (["serve", "--repository", "does-not-exist"], "is not a directory"),
    (["status", "ghost"], "'ghost' is not registered, served or rolled out"),
    (["show", "nope.json"], "does not exist"),
    (["apply", "nope.json", "--auto-approve"], "does not exist"),
    (["registry", "show", "Bad_Name"], "DNS-1123"),
    (["registry", "show", "x@notsemver"], "semantic version"),
    (["promote", "ghost"], "no paused rollout"),
    (["unlock", "abc"], "not locked"),
    (["policy", "check", "nope.json"], "does not exist"),
    (["plan", "--format", "yaml"], "Invalid value for '--format'"),
]


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_user_error_is_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mlops", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / ".mlops" / "mlflow.db").exists()
