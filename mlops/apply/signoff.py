"""The approvals a run was applied with, kept beside its journal (`RUN_ID.approvals.json`).

Written once when the run starts, like the run's copy of its plan: the audit trail says who
signed off the exact content applied (their `plan_digest` is the journal's).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from mlops import fsio
from mlops.apply import hooks, journal
from mlops.plan import types as plan_types


def path_of(state_dir: Path, run_id: str) -> Path:
    return state_dir / journal.JOURNAL_DIR / f"{run_id}.approvals.json"


class Recorder(hooks.Hook):
    def __init__(self, state_dir: Path, approvals: Sequence[Mapping[str, object]]) -> None:
        self.state_dir = state_dir
        self.approvals = [dict(a) for a in approvals]

    def on_run_start(self, run_id: str, plan: plan_types.Plan, resumed: bool) -> None:
        path = path_of(self.state_dir, run_id)
        if resumed and path.exists():
            return  # the run's sign-off was recorded when it began
        document = {
            "run_id": run_id,
            "plan_digest": journal.plan_digest(plan),
            "approvals": self.approvals,
        }
        fsio.atomic_write(path, json.dumps(document, indent=2) + "\n")
