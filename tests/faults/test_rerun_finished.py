"""An apply killed after it journaled its outcome, re-run with the same plan (found by
tests/e2e/test_crash_points.py): before, the re-run refused the plan as stale (exit 1,
"plan again") although the run had converged; now it reports the recorded outcome."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import E2EWorkspace

pytestmark = pytest.mark.slow


def test_same_plan_after_a_finished_run_reports_its_outcome(ws: E2EWorkspace) -> None:
    ws.deploy_v1()
    ws.spec("1.1.0", steps=[(100, 0.0)])
    plan = ws.plan()
    first = ws.mlops("apply", plan)
    run = re.search(r"Apply complete \(run (\S+)\)", first.output)
    assert run is not None, first.output
    again = ws.mlops("apply", plan)  # as after a SIGKILL between run_end and exit
    assert f"Apply complete (run {run.group(1)})" in again.output, again.output
    assert "stale" not in again.output
    assert ws.model()["weights"] == {"1.1.0": 100}
    # A plan made before that run is still stale (only the same plan is recognised).
    ws.spec("1.0.0", steps=[(100, 0.0)])
    ws.mlops("plan", "specs/", "-o", "plans/back.json")
    ws.mlops("apply", "plans/back.json")
    stale = ws.mlops("apply", plan, expect=1)
    assert "stale" in stale.output, stale.output
