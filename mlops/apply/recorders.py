"""Listeners that persist what an apply run does: the journal and the rollout status files.

`.mlops/rollouts/<model>.json` is what `mlops status` reads for gate history and any rollout
in progress; it is rewritten atomically on every event, so a reader never sees half a file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mlops import core, errors
from mlops.apply import hooks, journal
from mlops.gates import evaluate as gates
from mlops.plan import types as plan_types

ROLLOUTS_DIR = "rollouts"
HISTORY_LIMIT = 500  # gate rounds kept per model


class JournalHook(hooks.Hook):
    """Writes every event to the journal. Intents are written by `on_action_start`, which the
    executor calls before it acts."""

    def __init__(self, journal_: journal.Journal) -> None:
        self.journal = journal_

    def on_action_start(self, action: plan_types.Action) -> None:
        self.journal.append(journal.Event.INTENT, action.id, kind=action.kind.value)

    def on_action_end(self, action: plan_types.Action, outcome: str, detail: str = "") -> None:
        event = {
            "failed": journal.Event.FAILED,
            "skipped": journal.Event.SKIPPED,
        }.get(outcome, journal.Event.DONE)
        self.journal.append(event, action.id, outcome=outcome, detail=detail)

    def on_weight(self, model: str, weights: Mapping[str, int], generation: int) -> None:
        self.journal.append(
            journal.Event.WEIGHT, model=model, weights=dict(weights), generation=generation
        )

    def on_measurement(
        self,
        model: str,
        checkpoint: Mapping[str, Any],
        measurements: Sequence[gates.Measurement],
        decision: gates.Decision,
    ) -> None:
        self.journal.append(
            journal.Event.MEASUREMENT,
            checkpoint.get("id"),
            model=model,
            decision=decision.value,
            measurements=[m.to_dict() for m in measurements],
        )

    def on_rollback(self, model: str, canary: str, reason: str) -> None:
        self.journal.append(journal.Event.ROLLED_BACK, model=model, canary=canary, reason=reason)

    def on_pause(self, model: str, checkpoint_id: str, reason: str) -> None:
        self.journal.append(journal.Event.PAUSED, checkpoint_id, model=model, reason=reason)

    def on_decision(self, model: str, decision: str, who: str) -> None:
        self.journal.append(journal.Event.DECISION, model=model, decision=decision, by=who)

    def on_message(self, text: str) -> None:
        self.journal.append(journal.Event.NOTE, text=text)

    def on_run_end(self, outcome: str) -> None:
        self.journal.append(journal.Event.RUN_END, outcome=outcome)


def rollout_path(state_dir: Path, model: str) -> Path:
    return state_dir / ROLLOUTS_DIR / f"{model}.json"


def read_rollout(state_dir: Path, model: str) -> dict[str, Any] | None:
    path = rollout_path(state_dir, model)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise errors.MlopsError(f"rollout record {path} is corrupt: {exc}") from None
    return data if isinstance(data, dict) else None


def read_rollouts(state_dir: Path) -> dict[str, dict[str, Any]]:
    directory = state_dir / ROLLOUTS_DIR
    found: dict[str, dict[str, Any]] = {}
    if directory.is_dir():
        for path in sorted(directory.glob("*.json")):
            record = read_rollout(state_dir, path.stem)
            if record is not None:
                found[path.stem] = record
    return found


class RolloutRecorder(hooks.Hook):
    """Keeps `.mlops/rollouts/<model>.json` current for `mlops status`."""

    def __init__(self, state_dir: Path, run_id: str) -> None:
        self.state_dir = state_dir
        self.run_id = run_id
        self.touched: set[str] = set()

    def _update(self, model: str, **changes: Any) -> None:
        record = read_rollout(self.state_dir, model) or {"model": model, "gates": []}
        if record.get("run_id") != self.run_id:
            # A new run starts a new rollout; history of earlier runs stays in their journals
            # but the most recent rounds are kept for context.
            record = {"model": model, "gates": record.get("gates", [])[-50:]}
            record["run_id"] = self.run_id
            record["status"] = "in_progress"
        record.update(changes)
        record["updated_at"] = _now()
        journal.write_json_atomic(rollout_path(self.state_dir, model), record)

    def on_action_start(self, action: plan_types.Action) -> None:
        model = core.Address(action.address).model
        after = action.after
        changes: dict[str, Any] = {"status": "in_progress", "action": action.id}
        if isinstance(after, plan_types.CheckpointPayload):
            changes["stable"] = after.stable
            changes["canary"] = after.canary
        self._update(model, **changes)

    def on_weight(self, model: str, weights: Mapping[str, int], generation: int) -> None:
        self._update(model, weights=dict(weights), generation=generation)

    def on_hold_start(self, model: str, checkpoint: Mapping[str, Any], remaining: float) -> None:
        ends = datetime.now(UTC) + timedelta(seconds=remaining)
        self._update(
            model,
            step={
                "checkpoint": checkpoint.get("id"),
                "weight": checkpoint.get("weight"),
                "hold": checkpoint.get("hold"),
                "interval": checkpoint.get("interval"),
                "ends_at": ends.isoformat(timespec="seconds"),
            },
        )

    def on_measurement(
        self,
        model: str,
        checkpoint: Mapping[str, Any],
        measurements: Sequence[gates.Measurement],
        decision: gates.Decision,
    ) -> None:
        record = read_rollout(self.state_dir, model) or {}
        history = list(record.get("gates", [])) if record.get("run_id") == self.run_id else []
        history.append(
            {
                "at": _now(),
                "run_id": self.run_id,
                "checkpoint": checkpoint.get("id"),
                "weight": checkpoint.get("weight"),
                "decision": decision.value,
                "measurements": [m.to_dict() for m in measurements],
            }
        )
        self._update(model, gates=history[-HISTORY_LIMIT:])

    def on_rollback(self, model: str, canary: str, reason: str) -> None:
        self._update(model, status="rolled_back", reason=reason, step=None)

    def on_pause(self, model: str, checkpoint_id: str, reason: str) -> None:
        self._update(model, status="paused", reason=reason, paused_checkpoint=checkpoint_id)

    def on_decision(self, model: str, decision: str, who: str) -> None:
        self._update(model, decision={"decision": decision, "by": who, "at": _now()})

    def on_action_end(self, action: plan_types.Action, outcome: str, detail: str = "") -> None:
        model = core.Address(action.address).model
        self.touched.add(model)
        if outcome == "failed":
            self._update(model, status="failed", reason=detail)

    def on_run_end(self, outcome: str) -> None:
        # Models still in progress when the run ends went through every action.
        for model in sorted(self.touched):
            record = read_rollout(self.state_dir, model) or {}
            if record.get("run_id") == self.run_id and record.get("status") == "in_progress":
                self._update(model, status="completed", step=None, reason=None, action=None)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
