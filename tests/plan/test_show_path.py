"""`mlops -C WS show plans/x.json` finds the plan as `apply` and `policy check` do (issue 10)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support import Runner


def test_show_resolves_the_plan_inside_the_workspace_given_with_c(
    mlops: Runner, workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    printed = mlops("plan", "specs", "-o", "plans/x.json")
    assert printed.code == 0, printed.err
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    shown = mlops("-C", str(workspace), "show", "plans/x.json")
    assert shown.code == 0, shown.err
    assert shown.out == printed.out
    # policy check reads the same file by the same argument.
    assert mlops("-C", str(workspace), "policy", "check", "plans/x.json").code == 0
    # As with apply, the plan file must be inside the workspace.
    shutil.copy(workspace / "plans" / "x.json", tmp_path / "outside.json")
    refused = mlops("-C", str(workspace), "show", str(tmp_path / "outside.json"))
    assert refused.code != 0 and "outside the workspace" in refused.err


def test_show_without_c_reads_the_path_as_given(
    mlops: Runner, workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert mlops("plan", "specs", "-o", "plans/x.json").code == 0
    copy = tmp_path / "copy.json"
    shutil.copy(workspace / "plans" / "x.json", copy)
    monkeypatch.chdir(tmp_path)
    shown = mlops("show", "copy.json")
    assert shown.code == 0, shown.err
    assert "fraud-scorer" in shown.out
