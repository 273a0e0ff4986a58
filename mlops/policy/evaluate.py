"""Evaluate a rule set over a plan: pure, values in and a result out."""

from __future__ import annotations

import datetime as dt
import fnmatch
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from mlops.plan import types as plan_types
from mlops.policy import approvals, checks, facts, rules

# Version of the --format json document; bump only with a compatible change.
JSON_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Violation:
    rule: str
    severity: rules.Severity
    model: str
    message: str  # the rule's message: why the rule exists
    detail: str  # what the plan does
    action: str | None = None


@dataclass(frozen=True)
class Waived:
    violation: Violation
    by: str
    reason: str
    expires: str


@dataclass(frozen=True)
class ApprovalCheck:
    """One `require_approvals` rule against the approvals of the plan's digest."""

    rule: str
    severity: rules.Severity
    required: int
    group: str | None
    approvers: tuple[str, ...]  # counted: of this digest (and in the group)
    stale: int  # approvals of other plan content (the plan changed after them)
    message: str
    waived_by: str | None = None

    @property
    def met(self) -> bool:
        return self.waived_by is not None or len(self.approvers) >= self.required

    def describe(self) -> str:
        who = f" from {self.group}" if self.group else ""
        got = ", ".join(self.approvers) or "none"
        text = f"{len(self.approvers)} of {self.required} approval(s){who} ({got})"
        if self.stale:
            text += f"; {self.stale} approval(s) of an earlier version of the plan do not count"
        if self.waived_by:
            text += f"; waived by {self.waived_by}"
        return text


@dataclass(frozen=True)
class Context:
    """What a check needs beyond the plan: the approvals beside it, the policy's groups and
    waivers, and today's date (waivers expire)."""

    standing: approvals.Standing | None = None
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    waivers: tuple[rules.Waiver, ...] = ()
    today: dt.date = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class Result:
    violations: tuple[Violation, ...]
    rules_checked: int
    models: tuple[str, ...]
    approvals: tuple[ApprovalCheck, ...] = ()
    waived: tuple[Waived, ...] = ()
    notes: tuple[str, ...] = ()  # e.g. an expired waiver, which no longer waives

    @property
    def approvals_met(self) -> bool:
        """Every approval rule of severity error is met (warnings only inform)."""
        return all(a.met for a in self.approvals if a.severity is rules.Severity.ERROR)

    @property
    def errors(self) -> list[Violation]:
        return [v for v in self.violations if v.severity is rules.Severity.ERROR]

    @property
    def warnings(self) -> list[Violation]:
        return [v for v in self.violations if v.severity is rules.Severity.WARNING]

    def passed(self, *, strict: bool = False) -> bool:
        return not (self.violations if strict else self.errors)

    def to_json(self, *, strict: bool = False) -> dict[str, Any]:
        return {
            "passed": self.passed(strict=strict),
            "strict": strict,
            "rules_checked": self.rules_checked,
            "models": list(self.models),
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "violations": [_violation(v) for v in self.violations],
            "approvals": [
                asdict(a)
                | {"severity": str(a.severity), "approvers": list(a.approvers), "met": a.met}
                for a in self.approvals
            ],
            "approvals_met": self.approvals_met,
            "waived": [
                {"violation": _violation(w.violation), "by": w.by, "reason": w.reason}
                | {"expires": w.expires}
                for w in self.waived
            ],
            "notes": list(self.notes),
        }


def _violation(v: Violation) -> dict[str, Any]:
    return asdict(v) | {"severity": str(v.severity)}


def in_scope(rule: rules.Rule, model: str) -> bool:
    return any(fnmatch.fnmatchcase(model, pattern) for pattern in rule.models)


def in_environment(rule: rules.Rule, plan: plan_types.Plan) -> bool:
    """A rule naming environments judges only plans made in one of them."""
    if rule.environments is None:
        return True
    where = plan.environment
    return where is not None and any(fnmatch.fnmatchcase(where, e) for e in rule.environments)


def evaluate(
    plan: plan_types.Plan, rule_set: tuple[rules.Rule, ...], context: Context | None = None
) -> Result:
    context = context or Context()
    changes = facts.model_facts(plan)
    checked = len(rule_set)
    rule_set = tuple(rule for rule in rule_set if in_environment(rule, plan))
    found: list[Violation] = []
    for rule in rule_set:
        if rule.check in checks.PLAN_CHECKS and changes:
            for finding in checks.PLAN_CHECKS[rule.check](rule.value, plan):
                found.append(Violation(rule.id, rule.severity, "*", rule.message, finding.detail))
    for name, change in changes.items():
        for rule in rule_set:
            if rule.check not in checks.CHECKS or not in_scope(rule, name):
                continue
            for finding in checks.CHECKS[rule.check](rule.value, change):
                found.append(
                    Violation(
                        rule=rule.id,
                        severity=rule.severity,
                        model=name,
                        message=rule.message,
                        detail=finding.detail,
                        action=finding.action_id,
                    )
                )
    kept, waived, notes = _waive(found, context)
    return Result(
        violations=tuple(kept),
        rules_checked=checked,
        models=tuple(changes),
        approvals=tuple(_approvals(plan, rule_set, changes, context)),
        waived=tuple(waived),
        notes=tuple(notes),
    )


def _waiver(rule: str, model: str, context: Context) -> tuple[rules.Waiver | None, list[str]]:
    """The active waiver of `rule` for `model`, and a note for each expired one that would
    have waived it."""
    notes = []
    for waiver in context.waivers:
        if waiver.rule != rule or not any(fnmatch.fnmatchcase(model, p) for p in waiver.models):
            continue
        if waiver.active(context.today):
            return waiver, []
        notes.append(
            f"the waiver of {rule} for {model} by {waiver.by} expired on "
            f"{waiver.expires.isoformat()}: it no longer waives ({waiver.reason})"
        )
    return None, notes


def _waive(
    found: list[Violation], context: Context
) -> tuple[list[Violation], list[Waived], list[str]]:
    kept: list[Violation] = []
    waived: list[Waived] = []
    notes: list[str] = []
    for violation in found:
        waiver, expired = _waiver(violation.rule, violation.model, context)
        notes.extend(n for n in expired if n not in notes)
        if waiver is None:
            kept.append(violation)
        else:
            waived.append(Waived(violation, waiver.by, waiver.reason, waiver.expires.isoformat()))
    return kept, waived, notes


def _approvals(
    plan: plan_types.Plan,
    rule_set: tuple[rules.Rule, ...],
    changes: Mapping[str, facts.RolloutFacts],
    context: Context,
) -> list[ApprovalCheck]:
    """Each approval rule whose scope holds a model the plan changes."""
    standing = context.standing
    current = standing.current if standing else ()
    found = []
    for rule in rule_set:
        need = rule.require_approvals
        scoped = [name for name in changes if in_scope(rule, name)]
        if need is None or not scoped:
            continue
        members = set(context.groups.get(need.group, ())) if need.group else None
        counted = sorted({a.by for a in current if members is None or a.by in members})
        waiver = None
        for name in scoped:
            waiver, _ = _waiver(rule.id, name, context)
            if waiver is None:
                break
        found.append(
            ApprovalCheck(
                rule=rule.id,
                severity=rule.severity,
                required=need.count,
                group=need.group,
                approvers=tuple(counted),
                stale=len(standing.stale) if standing else 0,
                message=rule.message,
                waived_by=waiver.by if waiver else None,
            )
        )
    return found


@dataclass(frozen=True)
class Outcome:
    """A policy check as the CLI reports it: which plan, which policy files, the result."""

    plan: str
    sources: tuple[str, ...]
    result: Result

    def to_json(self, *, strict: bool = False) -> dict[str, Any]:
        return {
            "format_version": JSON_FORMAT_VERSION,
            "plan": self.plan,
            "policies": list(self.sources),
            **self.result.to_json(strict=strict),
        }
