"""`plan` reports an engine inference port bound off loopback (serve.host in mlops.yaml)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.runtime.support import free_port
from tests.support import Runner


def test_plan_warns_when_serve_host_is_not_loopback(mlops: Runner, workspace: Path) -> None:
    (workspace / "mlops.yaml").write_text(
        f"target: local\nserve:\n  host: 0.0.0.0\n  port: {free_port()}\n"
    )
    result = mlops("plan")
    assert result.code == 0, result.err
    assert "Warning: serve.host 0.0.0.0 is not a loopback address" in result.out
    document = json.loads(mlops("plan", "--format", "json").out)
    assert any("serve.host 0.0.0.0" in w for w in document["warnings"])


def test_plan_on_loopback_has_no_such_warning(mlops: Runner) -> None:
    result = mlops("plan")
    assert result.code == 0, result.err
    assert "loopback" not in result.out
