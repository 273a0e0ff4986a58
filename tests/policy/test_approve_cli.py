"""`mlops approve`, `mlops show` with approvals, and apply refusing a plan without sign-off
(through the real CLI entry point; the refusal comes before any backend is touched)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops.plan import planfile
from tests import support
from tests.policy.conftest import canary, plan
from tests.support import Runner

POLICY = """
rules:
  - {id: two-sre, message: two SREs sign off, require_approvals: {count: 2, group: sre}}
groups:
  sre: [alice, bob]
"""


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Runner:
    return support.cli_runner(capsys)


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "ws"
    (root / "policies").mkdir(parents=True)
    (root / "mlops.yaml").write_text("target: local\n")
    (root / "policies" / "sign-off.yaml").write_text(POLICY)
    planfile.save(plan(canary()), root / "plans" / "release.json")
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLOPS_DEBUG", raising=False)
    return root


def test_apply_refuses_until_the_group_approved_then_a_change_needs_new_approvals(
    ws: Path, run: Runner
) -> None:
    refused = run("apply", "plans/release.json")
    assert refused.code == 1
    assert refused.err.strip().startswith(
        "Error: plan release.json lacks approvals: rule two-sre: 0 of 2 approval(s) from sre"
    )
    assert len(refused.err.strip().splitlines()) == 1

    assert run("approve", "plans/release.json", "--by", "alice", "--comment", "ok").code == 0
    assert run("approve", "plans/release.json", "--by", "mallory").code == 0  # not in sre
    still = run("apply", "plans/release.json")
    assert "1 of 2 approval(s) from sre (alice)" in still.err

    approved = run("approve", "plans/release.json", "--by", "bob")
    assert approved.code == 0 and "approvers of this plan: alice, bob, mallory" in approved.out
    check = run("policy", "check", "plans/release.json")
    assert "MET      two-sre: 2 of 2 approval(s) from sre (alice, bob)" in check.out

    # The plan file is replaced by another plan: every approval is of other content now.
    planfile.save(plan(canary(steps=((50, 60),))), ws / "plans" / "release.json")
    changed = run("apply", "plans/release.json")
    assert changed.code == 1
    assert "(the plan changed after it was approved)" in changed.err
    assert "3 approval(s) of an earlier version of the plan do not count" in changed.err


def test_show_lists_approvals_and_the_policy_result(ws: Path, run: Runner) -> None:
    run("approve", "plans/release.json", "--by", "alice", "--comment", "steps look right")
    text = run("show", "plans/release.json")
    assert "approved by alice at " in text.out and ": steps look right" in text.out
    md = run("show", "plans/release.json", "--format", "markdown", "--with-policy")
    assert md.out.startswith("<!-- mlops-plan-comment -->\n### mlops plan:")
    assert "#### Policy: passed (1 rules from " in md.out
    assert ":hourglass: `two-sre`: 1 of 2 approval(s) from sre (alice)" in md.out
    assert "- approved by **alice** at " in md.out
    as_json = run("show", "plans/release.json", "--format", "json")
    assert "approvals" not in json.loads(as_json.out)  # the JSON view is the plan alone


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--by", "a b"), '--by "a b": a name is 1-64 characters'),
        (("--by", "alice", "--comment", "x" * 501), "--comment is 501 characters"),
    ],
)
def test_bad_input_is_one_line(ws: Path, run: Runner, args: tuple[str, ...], message: str) -> None:
    result = run("approve", "plans/release.json", *args)
    assert result.code == 1 and message in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert not (ws / "plans" / "release.json.approvals.json").exists()
