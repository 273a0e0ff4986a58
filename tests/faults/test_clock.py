"""The wall clock jumping (issue 15, faults).

The holds, the gate windows and every timeout of apply run on the monotonic clock, which a
clock step does not move. One wait read the wall clock: the `keep_previous` wait before the
previous version is retired is measured from the journal's timestamp of the retire step's
intent, so that a resumed run does not start the wait over. Found: when the wall clock was
stepped back after that timestamp was written (an NTP correction of a clock that ran fast),
the resumed apply waited the size of the jump on top: hours. Now the journal only says how
much of the wait a killed run already spent, clamped to 0..keep_previous, and the rest is
timed on the monotonic clock.

How the jump is made: `apply` is SIGKILLed during the `keep_previous` wait, and its journal's
timestamps are moved three hours ahead (what a clock three hours fast wrote; the clock has
since been stepped back to the real time). libfaketime (Debian's 0.9.10) could not be used:
under it Python's `time.sleep` (clock_nanosleep on the monotonic clock) fails with EINVAL,
jump or no jump, which no real clock step does.
"""

from __future__ import annotations

import json
import re
import signal
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.conftest import E2EWorkspace, Load
from tests.e2e.test_crash_points import journal_events

pytestmark = pytest.mark.slow

JUMP = timedelta(hours=3)


def shift_journal(ws: E2EWorkspace, by: timedelta) -> None:
    directory = ws.root / ".mlops" / "journal"
    run_id = json.loads((directory / "current.json").read_text())["run_id"]
    path: Path = directory / f"{run_id}.jsonl"
    lines = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        record["at"] = (datetime.fromisoformat(record["at"]) + by).isoformat(
            timespec="milliseconds"
        )
        lines.append(json.dumps(record, separators=(",", ":")))
    path.write_text("\n".join(lines) + "\n")


def test_clock_stepped_back_does_not_stretch_the_keep_previous_wait(ws: E2EWorkspace) -> None:
    ws.deploy_v1()
    ws.spec(
        "1.1.0",
        steps=[(100, 0.0)],
        gates="[{metric: error_rate, max: 0.02}]",
        keep_previous=8.0,
    )
    plan = ws.plan()
    with Load(ws, rate=50.0):
        apply = ws.start("apply", plan)
        while apply.poll() is None:
            events = journal_events(ws)
            if any(e["event"] == "intent" and "retire" in str(e.get("action")) for e in events):
                apply.send_signal(signal.SIGKILL)  # in the keep_previous wait
                break
            time.sleep(0.01)
        apply.wait(30)
        assert apply.returncode == -signal.SIGKILL, "apply finished before the retire step"
        shift_journal(ws, JUMP)
        lock = json.loads((ws.root / ".mlops" / "lock.json").read_text())["id"]
        ws.mlops("unlock", lock)
        # Before the fix this waited three hours and eight seconds (the CLI timeout hits).
        resumed = ws.mlops("apply", plan, timeout=180)
    assert "Resuming run" in resumed.output, resumed.output
    waited = re.search(r"keeping 1.0.0 loaded for ([^ ]+)", resumed.output)
    assert waited is None or "h" not in waited.group(1), resumed.output
    model = ws.model()
    assert model["stable"] == "1.1.0" and model["weights"] == {"1.1.0": 100}
    row = next(r for r in model["versions"] if r["semver"] == "1.0.0")
    assert not row["loaded"], row
