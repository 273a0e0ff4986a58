"""`mlops plan` against a running engine: no changes, in-place config, outside changes."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from mlops import workspace as ws_mod
from mlops.plan import payloads
from mlops.providers.engine.runtime import LocalRuntime
from mlops.spec import load
from tests.support import Runner

from .test_cli import SPEC

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serving_as_specified_is_no_changes(mlops: Runner, serving: LocalRuntime) -> None:
    result = mlops("plan", "--detailed-exitcode")
    assert result.code == 0, result.out + result.err
    assert "No changes." in result.out and "outside of mlops" not in result.out


def test_batching_change_is_an_in_place_update(
    mlops: Runner, workspace: Path, serving: LocalRuntime
) -> None:
    spec_file = workspace / SPEC
    spec_file.write_text(spec_file.read_text().replace("max_batch_size: 32", "max_batch_size: 8"))
    result = mlops("plan", "--detailed-exitcode")
    assert result.code == 2, result.err
    assert "~ update_config     version.fraud-scorer@1.0.0" in result.out
    assert "batching.max_batch_size 32 -> 8" in result.out
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in result.out


def test_a_version_loaded_by_hand_is_an_outside_change(
    mlops: Runner, workspace: Path, serving: LocalRuntime
) -> None:
    ws = ws_mod.open_workspace(workspace)
    (item,) = load.load_specs([workspace / "specs"], workspace)
    artifact = workspace / "models" / "fraud-scorer-1.1.0.onnx"
    serving.load("fraud-scorer", "1.1.0", artifact, payloads.engine_settings(item.deployment))
    serving.set_traffic("fraud-scorer", {"1.0.0": 80, "1.1.0": 20}, None)
    result = mlops("plan")
    assert result.code == 0, result.err
    outside = result.out.index("Objects have changed outside of mlops")
    assert outside < result.out.index("mlops will perform the following actions")
    assert "~ traffic.fraud-scorer: weights" in result.out
    assert 'actual:   {"1.0.0": 80, "1.1.0": 20}' in result.out
    assert "set_traffic       traffic.fraud-scorer  1.0.0 80% / 1.1.0 20% -> 1.0.0 100%" in (
        result.out
    )
    assert ws.root == workspace.resolve()
