"""`mlops watch` reports outside changes (from the planner) when they appear and go, once
each, and fixes nothing. Real registry; the engine is not running (`no-verdict` for drift)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops import workspace as ws_module
from mlops.providers import factory
from mlops.state import applied
from mlops.state import models as state
from tests.drift import conftest
from tests.support import Runner

ROUND = ("watch", "--once", "--format", "json")
pytestmark = pytest.mark.slow


def test_outside_changes_are_reported_once_when_they_appear_and_when_they_go(
    tmp_path: Path, run: Runner
) -> None:
    root = conftest.make_registered(tmp_path / "ws")
    ws = ws_module.open_workspace(root)
    record = state.AppliedRecord(aliases={"stable": conftest.VERSION})
    applied.update(applied.path_in(ws.state_dir), conftest.NAME, record)
    registry = factory.registry(ws)
    registry.set_alias(conftest.NAME, "champion", conftest.VERSION)  # by hand

    def round_events() -> list[dict[str, str]]:
        result = run("-C", str(root), *ROUND)
        assert result.code == 0, result.err
        return [json.loads(line) for line in result.out.splitlines()]

    first = round_events()
    assert [e["kind"] for e in first] == ["started", "no-verdict", "outside-change", "stopped"]
    assert "the engine is not running" in first[1]["message"]
    assert "aliases" in first[2]["message"] and "champion" in first[2]["message"]
    assert [e["kind"] for e in round_events()] == ["started", "no-verdict", "stopped"]
    # Reported, not fixed: the alias set by hand is still there.
    aliases = registry.refresh([conftest.NAME])[conftest.NAME].aliases
    assert aliases == {"stable": conftest.VERSION, "champion": conftest.VERSION}
    registry.delete_alias(conftest.NAME, "champion")
    third = round_events()
    assert [e["kind"] for e in third] == ["started", "no-verdict", "outside-change-gone", "stopped"]
