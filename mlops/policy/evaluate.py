"""Evaluate a rule set over a plan: pure, values in and a result out."""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass
from typing import Any

from mlops.plan import types as plan_types
from mlops.policy import checks, facts, rules

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
class Result:
    violations: tuple[Violation, ...]
    rules_checked: int
    models: tuple[str, ...]

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
            "violations": [asdict(v) | {"severity": str(v.severity)} for v in self.violations],
        }


def in_scope(rule: rules.Rule, model: str) -> bool:
    return any(fnmatch.fnmatchcase(model, pattern) for pattern in rule.models)


def evaluate(plan: plan_types.Plan, rule_set: tuple[rules.Rule, ...]) -> Result:
    changes = facts.model_facts(plan)
    found: list[Violation] = []
    for name, change in changes.items():
        for rule in rule_set:
            if not in_scope(rule, name):
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
    return Result(violations=tuple(found), rules_checked=len(rule_set), models=tuple(changes))


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
