"""Plan files round-trip exactly; bad files and stale plans are refused with one line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mlops import errors
from mlops.plan import planfile
from mlops.plan import types as t
from mlops.state import applied
from mlops.state import models as state

from . import helpers as h
from .test_diff import IN_PROGRESS, STABLE_V1, V11_SHADOW


def test_round_trip(tmp_path: Path) -> None:
    live = STABLE_V1.model_copy(update={"traffic_rate": {"fraud": 3.0}})
    plan = h.plan([V11_SHADOW, h.deployment(name="other")], live)
    path = tmp_path / "plans" / "release.json"
    planfile.save(plan, path)
    loaded = planfile.load(path)
    assert loaded == plan
    assert planfile.dumps(loaded) == path.read_text()
    assert list(tmp_path.joinpath("plans").iterdir()) == [path]  # no temp file left behind


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a plan file (invalid JSON"),
        ("[1, 2]", "not a plan file (no format_version)"),
        ('{"format_version": 99}', "plan format version 99 is not supported"),
        (
            '{"format_version": 2, "schema_version": "mlops-plan/v2", "created_at": "x"}',
            "invalid plan file",
        ),
    ],
)
def test_bad_plan_files_are_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(errors.UsageError, match=re.escape(message)):
        planfile.load(path)


def test_missing_and_binary_plan_files(tmp_path: Path) -> None:
    with pytest.raises(errors.UsageError, match="does not exist"):
        planfile.load(tmp_path / "absent.json")
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(errors.UsageError, match="not UTF-8"):
        planfile.load(binary)


def test_unknown_action_kind_is_refused(tmp_path: Path) -> None:
    plan = h.plan([V11_SHADOW], STABLE_V1)
    data = json.loads(planfile.dumps(plan))
    data["actions"][0]["kind"] = "format_disk"
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(data))
    with pytest.raises(errors.UsageError, match=r"actions\.0\.kind"):
        planfile.load(path)


def test_fresh_plan_passes_and_any_live_change_makes_it_stale() -> None:
    plan = h.plan([V11_SHADOW], STABLE_V1)
    planfile.check_fresh(plan, STABLE_V1)
    # Traffic rates move all the time and are not part of the fingerprint.
    planfile.check_fresh(plan, STABLE_V1.model_copy(update={"traffic_rate": {"fraud": 99.0}}))
    moved = STABLE_V1.model_copy(
        update={"runtime": {"fraud": h.runtime("fraud", {"1.0.0": 90, "1.1.0": 10})}}
    )
    for changed in (moved, IN_PROGRESS, STABLE_V1.model_copy(update={"runtime_reachable": False})):
        with pytest.raises(errors.StalePlanError, match=r"^plan is stale: "):
            planfile.check_fresh(plan, changed)


def test_applied_records_round_trip_atomically(tmp_path: Path) -> None:
    path = applied.path_in(tmp_path / ".mlops")
    assert applied.read(path) == {}
    record = state.AppliedRecord(
        loaded=["1.0.0"], weights={"1.0.0": 100}, aliases={"stable": "1.0.0"}
    )
    applied.update(path, "fraud", record)
    applied.update(path, "other", state.AppliedRecord())
    assert applied.read(path) == {"fraud": record, "other": state.AppliedRecord()}
    applied.update(path, "other", None)
    assert set(applied.read(path)) == {"fraud"}
    assert json.loads(path.read_text())["format_version"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["applied.json"]


@pytest.mark.parametrize(
    "content",
    [
        "{oops",
        '{"format_version": 2, "models": {}}',
        '{"format_version": 1, "models": []}',
        '{"format_version": 1, "models": {"a": {"loaded": "x"}}}',
    ],
)
def test_corrupt_applied_file_is_a_clear_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "applied.json"
    path.write_text(content)
    with pytest.raises(errors.ConfigError, match=r"applied\.json"):
        applied.read(path)


def test_plan_types_are_plain_data() -> None:
    plan = h.plan([V11_SHADOW], STABLE_V1)
    assert all(isinstance(a, t.Action) for a in plan.actions)
