"""The apply journal: an append-only, fsynced JSON-lines record of one apply run.

Each step's intent is written (and fsynced) before the step acts and its outcome after, so a
run killed at any instant can be resumed: completed steps are skipped, an intent without an
outcome is re-run (every action is idempotent against live state).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from mlops import errors, fsio
from mlops.plan import planfile
from mlops.plan import types as plan_types

JOURNAL_DIR = "journal"
POINTER = "current.json"


class Event(StrEnum):
    RUN_START = "run_start"
    INTENT = "intent"  # about to act on an action
    DONE = "done"  # the action completed (or was already in effect)
    FAILED = "failed"  # the action raised; the run stops
    SKIPPED = "skipped"  # not run because its model was rolled back or paused
    WEIGHT = "weight"  # a weight table was applied and read back
    MEASUREMENT = "measurement"  # one round of gate measurements
    DECISION = "decision"  # a human decision (promote/rollback) recorded for the audit trail
    PAUSED = "paused"
    ROLLED_BACK = "rolled_back"
    # A rollback began: its steps, canary, reason and reject flag (everything needed to finish
    # it), written before its first step. ROLLBACK_DONE closes it; a run that has one without
    # the other finishes it before anything else.
    ROLLBACK = "rollback"
    ROLLBACK_DONE = "rollback_done"
    MODEL_STOPPED = "model_stopped"  # a model's remaining actions will not run (outcome, reason)
    NOTE = "note"
    RUN_END = "run_end"


@dataclass(frozen=True)
class Entry:
    seq: int
    at: str
    event: Event
    action: str | None
    data: dict[str, Any]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def plan_digest(plan: plan_types.Plan) -> str:
    blob = json.dumps(plan.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


class Journal:
    """One run's journal file. Create with `Journal.create`, reopen with `Journal.current`."""

    def __init__(self, directory: Path, run_id: str) -> None:
        self.directory = directory
        self.run_id = run_id
        self.path = directory / f"{run_id}.jsonl"
        self._entries = _read(self.path)

    # -- life cycle ---------------------------------------------------------------------------

    @classmethod
    def create(cls, state_dir: Path, plan: plan_types.Plan, source: str | None) -> Journal:
        directory = state_dir / JOURNAL_DIR
        directory.mkdir(parents=True, exist_ok=True)
        run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
        try:
            # The exact plan is kept beside the journal: resume and promote never depend on
            # the user's copy of the plan file still being there, or unchanged.
            fsio.atomic_write(directory / f"{run_id}.plan.json", plan.model_dump_json(indent=1))
            journal = cls(directory, run_id)
            journal.append(Event.RUN_START, plan_digest=plan_digest(plan), source=source)
            # The pointer's rename also makes the new journal file's name durable (one dir
            # fsync).
            fsio.atomic_write(
                directory / POINTER,
                json.dumps({"run_id": run_id, "plan_digest": plan_digest(plan)}),
            )
        except OSError as exc:  # nothing acted yet: the run simply did not start
            raise _unwritable(directory, exc) from None
        return journal

    @classmethod
    def current(cls, state_dir: Path) -> Journal | None:
        """The most recent run (finished or not), or None when apply never ran here."""
        directory = state_dir / JOURNAL_DIR
        try:
            pointer = json.loads((directory / POINTER).read_text())
            run_id = str(pointer["run_id"])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise errors.MlopsError(
                f"journal pointer {directory / POINTER} is corrupt: {exc}"
            ) from None
        if not (directory / f"{run_id}.jsonl").is_file():
            raise errors.MlopsError(f"journal {run_id} named by {directory / POINTER} is missing")
        return cls(directory, run_id)

    def plan(self) -> plan_types.Plan:
        path = self.directory / f"{self.run_id}.plan.json"
        try:
            text = path.read_text()
        except OSError as exc:
            raise errors.MlopsError(f"cannot read the plan of run {self.run_id}: {exc}") from None
        # The same checks and one-line errors as a saved plan (e.g. a run begun by an older
        # mlops, whose plan format this one does not read).
        return planfile.loads(text, source=f"the plan of run {self.run_id}")

    # -- writing ------------------------------------------------------------------------------

    def append(self, event: Event, action: str | None = None, **data: Any) -> Entry:
        entry = Entry(len(self._entries) + 1, now_iso(), event, action, data)
        record = {"seq": entry.seq, "at": entry.at, "event": entry.event.value}
        if action is not None:
            record["action"] = action
        if data:
            record["data"] = data
        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise _unwritable(self.path, exc) from None
        try:
            size = os.fstat(fd).st_size
            pending = memoryview(line.encode())
            while pending:  # a short write (a disk filling up) is not a whole entry
                pending = pending[os.write(fd, pending) :]
            os.fsync(fd)
        except OSError as exc:
            # No torn line is left behind for the next append to follow (that would read as
            # a corrupt journal): the file goes back to its last whole entry.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise _unwritable(self.path, exc) from None
        finally:
            os.close(fd)
        self._entries.append(entry)
        return entry

    # -- reading ------------------------------------------------------------------------------

    @property
    def entries(self) -> list[Entry]:
        return list(self._entries)

    def completed(self) -> set[str]:
        """Action ids whose outcome is recorded as done."""
        return {e.action for e in self._entries if e.event is Event.DONE and e.action}

    def last(self, event: Event, action: str | None = None) -> Entry | None:
        for entry in reversed(self._entries):
            if entry.event is event and (action is None or entry.action == action):
                return entry
        return None

    def rollbacks(self) -> dict[str, tuple[Entry, bool]]:
        """Per model, the rollback this run began (its ROLLBACK entry) and whether it ended."""
        found: dict[str, tuple[Entry, bool]] = {}
        for entry in self._entries:
            model = str(entry.data.get("model"))
            if entry.event is Event.ROLLBACK:
                found[model] = (entry, False)
            elif entry.event is Event.ROLLBACK_DONE and model in found:
                found[model] = (found[model][0], True)
        return found

    def unfinished_rollbacks(self) -> list[Entry]:
        if self.finished:
            return []
        return [entry for entry, ended in self.rollbacks().values() if not ended]

    @property
    def plan_digest(self) -> str:
        start = self._entries[0] if self._entries else None
        return str(start.data.get("plan_digest", "")) if start else ""

    @property
    def finished(self) -> bool:
        return self.last(Event.RUN_END) is not None

    def outcome(self) -> str | None:
        end = self.last(Event.RUN_END)
        return str(end.data.get("outcome")) if end else None


def _unwritable(path: Path, exc: OSError) -> errors.MlopsError:
    return errors.MlopsError(
        f"cannot write the journal {path}: {exc.strerror or exc}; the step was not recorded: "
        "free the space (or fix the cause), then re-run the same apply to resume"
    )


def _read(path: Path) -> list[Entry]:
    entries: list[Entry] = []
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return entries
    for number, line in enumerate(lines, 1):
        try:
            raw = json.loads(line)
            entries.append(
                Entry(
                    int(raw["seq"]),
                    str(raw["at"]),
                    Event(raw["event"]),
                    raw.get("action"),
                    dict(raw.get("data") or {}),
                )
            )
        except (ValueError, KeyError, TypeError):
            # A kill during a write can leave a torn last line; that step simply has no
            # outcome and is re-run. A torn line anywhere else means the file was edited.
            if number == len(lines):
                break
            raise errors.MlopsError(f"journal {path} is corrupt at line {number}") from None
    return entries


def write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    """Shared by the status recorder: readers never see a half-written file."""
    fsio.atomic_write(path, json.dumps(payload, indent=1, default=str))


def unfinished_rollbacks(state_dir: Path) -> list[str]:
    """One line per rollback the workspace's open run began and did not finish: nothing else
    may change that model before it is finished."""
    run = Journal.current(state_dir)
    if run is None:
        return []
    return [
        f"{entry.data.get('model')}: the rollback of {entry.data.get('canary')} begun by run "
        f"{run.run_id} did not finish: re-run that apply, or `mlops rollback "
        f"{entry.data.get('model')}`, to finish it before planning this model again"
        for entry in run.unfinished_rollbacks()
    ]
