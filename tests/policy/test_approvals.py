"""Sign-off bound to a plan's digest, approver groups, and waivers that expire."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from mlops import errors
from mlops.plan import planfile
from mlops.policy import approvals, evaluate, load, rules
from mlops.spec import safeyaml
from tests.policy.conftest import canary, immediate, plan

TODAY = dt.date(2026, 6, 1)

POLICY = """
rules:
  - {id: two-sre, message: two SREs sign off, require_approvals: {count: 2, group: sre}}
  - {id: no-immediate, message: never all at once, forbid_strategy: immediate}
groups:
  sre: [alice, bob, carol]
waivers:
  - {rule: no-immediate, models: fraud, by: carol, reason: hotfix INC-42, expires: 2026-06-01}
"""


def _policy(text: str = POLICY) -> load.PolicySet:
    return load.parse_policies({"p.yaml": safeyaml.read_text(text)})


def _context(
    policy: load.PolicySet, standing: approvals.Standing | None, today: dt.date = TODAY
) -> evaluate.Context:
    return evaluate.Context(
        standing=standing, groups=policy.groups, waivers=policy.waivers, today=today
    )


def test_an_approval_is_bound_to_the_plan_digest(tmp_path: Path) -> None:
    path = tmp_path / "release.json"
    the_plan = plan(canary())
    planfile.save(the_plan, path)
    approvals.record(path, the_plan, "alice", "looks right")
    approvals.record(path, the_plan, "alice", "renewed")  # one approval per person and digest
    recorded = approvals.read(path)
    assert [(a.by, a.comment) for a in recorded] == [("alice", "renewed")]
    assert recorded[0].plan_digest == approvals.digest(the_plan)
    assert approvals.digest(the_plan).startswith("sha256:") and len(recorded[0].plan_digest) == 71
    # Reformatting the file is not a change; a changed plan is another digest.
    path.write_text(json.dumps(json.loads(path.read_text())), encoding="utf-8")
    assert approvals.digest(planfile.load(path)) == approvals.digest(the_plan)
    changed = plan(canary(steps=((50, 60),)))
    standing = approvals.standing(changed, recorded)
    assert standing.current == () and len(standing.stale) == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not an approvals file (invalid JSON)"),
        ('{"format_version": 2, "approvals": []}', "format_version"),
        (
            '{"approvals": [{"by": "a b", "at": "x", "plan_digest": "sha256:' + "0" * 64 + '"}]}',
            "approvals.0.by",
        ),
        ('{"approvals": [], "extra": 1}', "extra"),
    ],
)
def test_bad_approvals_files_are_one_line_errors(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "p.json"
    approvals.path_for(path).write_text(content, encoding="utf-8")
    with pytest.raises(errors.UsageError) as caught:
        approvals.read(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_bounds_on_names_comments_and_size(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    the_plan = plan(canary())
    with pytest.raises(errors.UsageError, match="--by"):
        approvals.record(path, the_plan, "alice\nbob")
    with pytest.raises(errors.UsageError, match="one line"):
        approvals.record(path, the_plan, "alice", "a\nb")
    with pytest.raises(errors.UsageError, match="at most 500"):
        approvals.record(path, the_plan, "alice", "x" * 501)
    approvals.path_for(path).write_bytes(b" " * (approvals.MAX_BYTES + 1))
    with pytest.raises(errors.UsageError, match="too large"):
        approvals.read(path)


def test_require_approvals_counts_distinct_group_members_of_this_digest() -> None:
    policy = _policy()
    the_plan = plan(canary())
    digest = approvals.digest(the_plan)

    def check(*names: str, other: tuple[str, ...] = ()) -> evaluate.ApprovalCheck:
        recorded = [
            approvals.Approval(by=n, at="2026-06-01T00:00:00+00:00", plan_digest=digest)
            for n in names
        ] + [
            approvals.Approval(
                by=n, at="2026-06-01T00:00:00+00:00", plan_digest="sha256:" + "0" * 64
            )
            for n in other
        ]
        standing = approvals.standing(the_plan, recorded)
        result = evaluate.evaluate(the_plan, policy.rules, _context(policy, standing))
        (found,) = result.approvals
        return found

    assert not check().met
    assert not check("alice", "mallory").met  # mallory is not in sre
    assert check("alice", "bob").met
    assert check("alice", "bob").describe() == "2 of 2 approval(s) from sre (alice, bob)"
    stale = check("alice", other=("bob",))
    assert not stale.met and "1 approval(s) of an earlier version" in stale.describe()


def test_no_approval_rule_for_models_out_of_scope() -> None:
    policy = _policy("rules:\n  - {id: r, message: m, models: 'pay-*', require_approvals: 1}\n")
    result = evaluate.evaluate(plan(canary()), policy.rules, _context(policy, None))
    assert result.approvals == ()


def test_a_waiver_waives_until_it_expires_and_then_says_so() -> None:
    policy = _policy()
    the_plan = plan(immediate())
    active = evaluate.evaluate(the_plan, policy.rules, _context(policy, None, TODAY))
    assert [v.rule for v in active.violations] == []
    (waived,) = active.waived
    assert (waived.violation.rule, waived.by, waived.reason) == (
        "no-immediate",
        "carol",
        "hotfix INC-42",
    )
    assert not active.errors and active.notes == ()
    later = evaluate.evaluate(
        the_plan, policy.rules, _context(policy, None, TODAY + dt.timedelta(days=1))
    )
    assert [v.rule for v in later.violations] == ["no-immediate"] and later.waived == ()
    assert later.notes == (
        "the waiver of no-immediate for fraud by carol expired on 2026-06-01: "
        "it no longer waives (hotfix INC-42)",
    )
    # Another model is not covered by the waiver at all.
    other = evaluate.evaluate(
        plan(immediate(name="other")), policy.rules, _context(policy, None, TODAY)
    )
    assert [v.model for v in other.violations] == ["other"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "rules:\n  - {id: r, message: m, require_approvals: {count: 1, group: ops}}\n",
            "require_approvals.group 'ops' is not defined",
        ),
        (
            "rules:\n  - {id: r, message: m, forbid_delete: true}\n"
            "waivers:\n  - {rule: nope, by: a, reason: x, expires: 2026-01-01}\n",
            "waivers: rule 'nope' is not defined",
        ),
        (
            "rules:\n  - {id: r, message: m, forbid_delete: true}\n"
            "waivers:\n  - {rule: r, by: a, reason: x}\n",
            "expires",
        ),
        (
            "rules:\n  - {id: r, message: m, require_approvals: 0}\n",
            "greater than or equal to 1",
        ),
        (
            "rules:\n  - {id: r, message: m, forbid_delete: true}\ngroups: {sre: ['a b']}\n",
            "groups.sre",
        ),
    ],
)
def test_bad_groups_waivers_and_requirements(text: str, message: str) -> None:
    with pytest.raises(load.PolicyFileError) as caught:
        _policy(text)
    assert message in str(caught.value)


def test_requirement_shorthand() -> None:
    rule = rules.Rule.model_validate({"id": "r", "message": "m", "require_approvals": 3})
    assert rule.require_approvals == rules.ApprovalRequirement(count=3)
