"""Journal: append-only, fsynced, readable back after a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops import errors
from mlops.apply import journal
from mlops.plan import types as t


def _plan() -> t.Plan:
    return t.Plan(
        created_at="2024-01-01T00:00:00+00:00",
        workspace="/ws",
        spec_digest="d",
        state_fingerprint="sha256:x",
        actions=[
            t.Action(
                id="m/01-load",
                address="version.m@1.0.0",
                kind=t.ActionKind.LOAD,
                symbol=t.ChangeSymbol.CREATE,
                after={
                    "semver": "1.0.0",
                    "settings": {
                        "signature": {
                            "inputs": [{"name": "x", "dtype": "FP32", "shape": [-1, 4]}],
                            "outputs": [{"name": "y", "dtype": "FP32", "shape": [-1, 2]}],
                        }
                    },
                    "replicas": 1,
                },
            )
        ],
    )


def test_create_append_and_reopen(tmp_path: Path) -> None:
    plan = _plan()
    run = journal.Journal.create(tmp_path, plan, "plans/p.json")
    run.append(journal.Event.INTENT, "m/01-load", kind="load")
    run.append(journal.Event.DONE, "m/01-load", outcome="done")

    again = journal.Journal.current(tmp_path)
    assert again is not None
    assert again.run_id == run.run_id
    assert again.completed() == {"m/01-load"}
    assert again.plan_digest == journal.plan_digest(plan)
    assert again.plan() == plan
    assert not again.finished
    again.append(journal.Event.RUN_END, outcome="applied")
    latest = journal.Journal.current(tmp_path)
    assert latest is not None and latest.outcome() == "applied"


def test_intent_without_outcome_is_not_completed(tmp_path: Path) -> None:
    run = journal.Journal.create(tmp_path, _plan(), None)
    run.append(journal.Event.INTENT, "m/01-load")
    assert run.completed() == set()
    assert run.last(journal.Event.INTENT, "m/01-load") is not None


def test_torn_last_line_is_ignored(tmp_path: Path) -> None:
    run = journal.Journal.create(tmp_path, _plan(), None)
    run.append(journal.Event.DONE, "m/01-load")
    with open(run.path, "a") as handle:
        handle.write('{"seq": 3, "at": "x", "ev')  # killed mid-write
    reopened = journal.Journal(run.directory, run.run_id)
    assert reopened.completed() == {"m/01-load"}
    # The next append starts a fresh line after the torn one, and reading still works.
    reopened.append(journal.Event.NOTE, text="resumed")


def test_corruption_in_the_middle_is_an_error(tmp_path: Path) -> None:
    run = journal.Journal.create(tmp_path, _plan(), None)
    run.append(journal.Event.DONE, "m/01-load")
    lines = run.path.read_text().splitlines()
    run.path.write_text("\n".join([lines[0], "garbage", *lines[1:]]) + "\n")
    with pytest.raises(errors.MlopsError, match="corrupt at line 2"):
        journal.Journal(run.directory, run.run_id)


def test_lines_are_json_with_sequence_numbers(tmp_path: Path) -> None:
    run = journal.Journal.create(tmp_path, _plan(), None)
    run.append(journal.Event.WEIGHT, model="m", weights={"1.0.0": 100}, generation=2)
    records = [json.loads(line) for line in run.path.read_text().splitlines()]
    assert [r["seq"] for r in records] == [1, 2]
    assert records[1]["data"]["weights"] == {"1.0.0": 100}


def test_no_journal_yet(tmp_path: Path) -> None:
    assert journal.Journal.current(tmp_path) is None


def test_a_run_begun_with_an_older_plan_format_fails_in_one_line(tmp_path: Path) -> None:
    run = journal.Journal.create(tmp_path, _plan(), None)
    plan_file = run.directory / f"{run.run_id}.plan.json"
    doc = json.loads(plan_file.read_text())
    doc["format_version"] = 1  # as an mlops before the typed payloads wrote it
    doc.pop("schema_version", None)
    plan_file.write_text(json.dumps(doc))
    with pytest.raises(errors.MlopsError) as info:
        journal.Journal(run.directory, run.run_id).plan()
    message = info.value.message
    assert "\n" not in message
    assert f"the plan of run {run.run_id}" in message and "plan again" in message
