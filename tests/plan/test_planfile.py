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


def _saved(tmp_path: Path, data: dict[str, object]) -> Path:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    return path


def test_a_version_1_plan_file_is_refused_in_one_line_saying_to_plan_again(
    tmp_path: Path,
) -> None:
    # What `mlops plan -o` wrote before payloads were typed: untyped payloads, no model.
    data = json.loads(planfile.dumps(h.plan([V11_SHADOW], STABLE_V1)))
    data["format_version"] = 1
    del data["schema_version"]
    for action in data["actions"]:
        del action["model"]
    with pytest.raises(errors.UsageError) as info:
        planfile.load(_saved(tmp_path, data))
    message = info.value.message
    assert "\n" not in message and message.endswith("; plan again")
    assert "plan format version 1 is not supported" in message and "mlops-plan/v2" in message


@pytest.mark.parametrize("schema", ["mlops-plan/v3", None, 2, "x" * 10_000])
def test_another_schema_is_refused(tmp_path: Path, schema: object) -> None:
    data = json.loads(planfile.dumps(h.plan([V11_SHADOW], STABLE_V1)))
    data["schema_version"] = schema
    if schema is None:
        del data["schema_version"]
    with pytest.raises(errors.UsageError, match=r"is not supported .*; plan again$") as info:
        planfile.load(_saved(tmp_path, data))
    assert len(info.value.message) < 300  # a hostile value is cut, not echoed


def test_a_hostile_payload_gets_a_short_one_line_error(tmp_path: Path) -> None:
    data = json.loads(planfile.dumps(h.plan([V11_SHADOW], STABLE_V1)))
    traffic = next(a for a in data["actions"] if a["kind"] == "set_traffic")
    traffic["after"]["weights"] = {"1.0.0\n" + "9" * 100_000: 100}
    with pytest.raises(errors.UsageError) as info:
        planfile.load(_saved(tmp_path, data))
    message = info.value.message
    assert "invalid plan file: actions." in message and ".after.weights" in message
    assert "\n" not in message and len(message) < 700


def test_a_payload_that_does_not_match_its_kind_is_refused(tmp_path: Path) -> None:
    data = json.loads(planfile.dumps(h.plan([V11_SHADOW], STABLE_V1)))
    index, retire = next((i, a) for i, a in enumerate(data["actions"]) if a["kind"] == "retire")
    # A retire payload under another kind is validated as that kind's model, and refused.
    retire["kind"] = "verify"
    with pytest.raises(errors.UsageError, match=rf"actions\.{index}\.after\.sha256: Field req"):
        planfile.load(_saved(tmp_path, data))


@pytest.mark.parametrize("address", ["nodot", "version.fraud", "traffic.Fraud", 7])
def test_a_malformed_address_is_refused_without_a_traceback(
    tmp_path: Path, address: object
) -> None:
    data = json.loads(planfile.dumps(h.plan([V11_SHADOW], STABLE_V1)))
    data["actions"][0]["address"] = address
    del data["actions"][0]["model"]  # the default is the address's model: never reached
    with pytest.raises(errors.UsageError, match=r"invalid plan file: actions\.0\.address: "):
        planfile.load(_saved(tmp_path, data))


def test_an_action_of_another_model_than_its_address_is_refused(tmp_path: Path) -> None:
    data = json.loads(planfile.dumps(h.plan([V11_SHADOW], STABLE_V1)))
    data["actions"][0]["model"] = "other"
    with pytest.raises(errors.UsageError, match="is not of model other"):
        planfile.load(_saved(tmp_path, data))


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
