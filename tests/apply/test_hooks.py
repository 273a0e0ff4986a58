"""Hooks fan out in order; recorders persist status; the progress view prints plain lines."""

from __future__ import annotations

import io
from pathlib import Path

from mlops.apply import hooks, journal, progress, recorders
from mlops.core import Verdict
from mlops.gates import evaluate as gates
from mlops.plan import types as t

ACTION = t.Action(
    id="m/04-checkpoint_gate-5",
    address="traffic.m",
    kind=t.ActionKind.CHECKPOINT_GATE,
    symbol=t.ChangeSymbol.READ,
    after={"stable": "1.0.0", "canary": "1.1.0", "weight": 5, "hold": 10, "interval": 1},
)
CHECKPOINT = {"id": ACTION.id, **ACTION.after.model_dump(mode="json")}
ROUND = [gates.Measurement("error_rate", Verdict.PASSED, 0.0, "<= 0.001", "ok", 250.0)]


class Recording(hooks.Hook):
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def on_action_start(self, action: t.Action) -> None:
        self.log.append(f"{self.name}:{action.id}")


def test_fan_out_calls_every_listener_in_order() -> None:
    log: list[str] = []
    fan = hooks.Hooks([Recording("a", log), Recording("b", log)])
    fan.on_action_start(ACTION)
    fan.on_hold_tick("m", 1.0, 2.0)  # not overridden: the base no-op
    assert log == [f"a:{ACTION.id}", f"b:{ACTION.id}"]


def test_rollout_recorder_tracks_a_rollout(tmp_path: Path) -> None:
    rec = recorders.RolloutRecorder(tmp_path, "run-1")
    rec.on_action_start(ACTION)
    rec.on_weight("m", {"1.0.0": 95, "1.1.0": 5}, 3)
    rec.on_hold_start("m", CHECKPOINT, 10.0)
    rec.on_measurement("m", CHECKPOINT, ROUND, gates.Decision.CONTINUE)
    rec.on_pause("m", ACTION.id, "no traffic")
    record = recorders.read_rollout(tmp_path, "m")
    assert record is not None
    assert record["status"] == "paused"
    assert record["canary"] == "1.1.0" and record["weights"] == {"1.0.0": 95, "1.1.0": 5}
    assert record["gates"][0]["measurements"][0]["verdict"] == "passed"
    assert record["paused_checkpoint"] == ACTION.id
    assert list(recorders.read_rollouts(tmp_path)) == ["m"]


def test_journal_hook_writes_intent_and_outcome(tmp_path: Path) -> None:
    plan = t.Plan(created_at="x", workspace="w", spec_digest="d", state_fingerprint="f")
    run = journal.Journal.create(tmp_path, plan, None)
    hook = recorders.JournalHook(run)
    hook.on_action_start(ACTION)
    assert run.completed() == set()
    hook.on_measurement("m", CHECKPOINT, ROUND, gates.Decision.CONTINUE)
    hook.on_action_end(ACTION, "done")
    assert run.completed() == {ACTION.id}
    events = [e.event for e in run.entries]
    assert events == [
        journal.Event.RUN_START,
        journal.Event.INTENT,
        journal.Event.MEASUREMENT,
        journal.Event.DONE,
    ]


def test_progress_prints_plain_lines_without_a_tty() -> None:
    out = io.StringIO()
    view = progress.Progress(out)
    view.on_action_start(ACTION)
    view.on_weight("m", {"1.0.0": 95, "1.1.0": 5}, 3)
    view.on_measurement("m", CHECKPOINT, ROUND, gates.Decision.CONTINUE)
    view.on_pause("m", ACTION.id, "inconclusive")
    text = out.getvalue()
    assert "1.0.0=95%, 1.1.0=5%" in text
    assert "error_rate=0 [passed]" in text
    assert "mlops promote m" in text
    assert "\x1b[" not in text
