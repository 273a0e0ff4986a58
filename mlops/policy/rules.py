"""The policy rule language: one declarative check per rule, with an id, message and severity.

A rule names exactly one check key so that its message always explains exactly one thing.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from mlops import core

_RULE_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


class RolloutStrategy(StrEnum):
    """The strategy a plan actually carries out (inferred from its actions, see facts.py)."""

    CANARY = "canary"
    SHADOW = "shadow"
    IMMEDIATE = "immediate"


def _duration(value: Any) -> float:
    if isinstance(value, str | int | float):
        return core.parse_duration(value)
    raise ValueError("must be a duration such as 30s, 5m or 1h")


def _string_list(value: Any) -> Any:
    # `models: "fraud-*"` reads better than a one-element list; accept both.
    return [value] if isinstance(value, str) else value


Duration = Annotated[float, BeforeValidator(_duration)]
Percent = Annotated[int, Field(ge=0, le=100)]

# Check key -> one-line description (used in docs, `did you mean`, and error messages).
CHECKS: dict[str, str] = {
    "max_first_step_weight": "first traffic step of a rollout sends at most N% to the new version",
    "min_hold": "every partial-traffic step holds at least this long under its gates",
    "min_canary_steps": "at least N partial-traffic steps before 100%",
    "max_step_increase": "no step raises the new version's weight by more than N points",
    "require_gates": "every checkpoint of a rollout checks these gates (metric or name)",
    "max_error_rate_threshold": "error_rate gates allow at most this fraction of errors",
    "max_latency_increase": "latency gates allow at most this relative increase",
    "min_requests": "checkpoints need at least N requests before a verdict",
    "forbid_strategy": "rollouts must not use these strategies",
    "require_shadow_for_major": "a major version bump mirrors traffic (shadow) before weights move",
    "forbid_delete": "the plan must not delete a deployment",
    "require_sha256": "registered artifacts pin their sha256 in the spec",
    "require_approvals": "apply needs N approvals of this very plan (optionally from a group)",
    "max_replicas": "a model runs at most N replicas after the plan (replica budget)",
    "max_accelerators": "a model holds at most N accelerators after the plan (accelerator budget)",
    "max_accelerator_hours": "a rollout's extra capacity uses at most N accelerator-hours",
    "max_hourly_cost": "the plan's models cost at most this much per hour after it (costs:)",
    "max_rollout_cost": "the extra capacity of the plan's rollouts costs at most this much",
}

# Checks judged once per plan (its totals), not per model.
PLAN_CHECKS = ("max_hourly_cost", "max_rollout_cost")

_META_KEYS = {"id", "message", "severity", "models", "environments"}

NAME = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$"
Name = Annotated[str, Field(pattern=NAME)]
GroupName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]


class ApprovalRequirement(BaseModel):
    """`require_approvals: 2` or `{count: 2, group: sre}`: distinct approvers of the plan's
    digest, members of `group` (the policy's `groups:`) when one is named."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    count: int = Field(ge=1, le=20)
    group: GroupName | None = None


def _requirement(value: Any) -> Any:
    return {"count": value} if isinstance(value, int) and not isinstance(value, bool) else value


class Rule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    message: str = Field(min_length=1, max_length=500)
    severity: Severity = Severity.ERROR
    models: Annotated[list[str], BeforeValidator(_string_list)] = Field(
        default_factory=lambda: ["*"], min_length=1
    )
    # Globs of mlops.yaml `environment`: the rule judges only plans made there (None: all).
    environments: Annotated[list[str], BeforeValidator(_string_list)] | None = Field(
        default=None, min_length=1, max_length=64
    )

    max_first_step_weight: Percent | None = None
    min_hold: Duration | None = None
    min_canary_steps: Annotated[int, Field(ge=0, le=100)] | None = None
    max_step_increase: Annotated[int, Field(ge=1, le=100)] | None = None
    require_gates: Annotated[list[str], BeforeValidator(_string_list)] | None = None
    max_error_rate_threshold: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    max_latency_increase: Annotated[float, Field(ge=0.0, le=10.0)] | None = None
    min_requests: Annotated[int, Field(ge=0)] | None = None
    forbid_strategy: Annotated[list[RolloutStrategy], BeforeValidator(_string_list)] | None = None
    require_shadow_for_major: bool | None = None
    forbid_delete: bool | None = None
    require_sha256: bool | None = None
    require_approvals: Annotated[ApprovalRequirement, BeforeValidator(_requirement)] | None = None
    max_replicas: Annotated[int, Field(ge=1, le=256)] | None = None
    max_accelerators: Annotated[int, Field(ge=0, le=4096)] | None = None
    max_accelerator_hours: Annotated[float, Field(ge=0, le=1e6)] | None = None
    max_hourly_cost: Annotated[float, Field(ge=0, le=1e9)] | None = None
    max_rollout_cost: Annotated[float, Field(ge=0, le=1e9)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_known_check(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("a rule is a mapping with id, message, severity and one check")
        unknown = [k for k in data if k not in _META_KEYS and k not in CHECKS]
        for key in unknown:
            close = difflib.get_close_matches(str(key), [*CHECKS, *_META_KEYS], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown check {key!r}{hint}; known checks: {', '.join(CHECKS)}")
        checks = [k for k in data if k in CHECKS]
        if len(checks) != 1:
            found = ", ".join(checks) if checks else "none"
            raise ValueError(f"a rule needs exactly one check key (found: {found})")
        return data

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _RULE_ID.match(value):
            raise ValueError("rule ids use lowercase letters, digits, '-', '_' and '.'")
        return value

    @property
    def check(self) -> str:
        """The one check key this rule sets."""
        return next(key for key in CHECKS if getattr(self, key) is not None)

    @property
    def value(self) -> Any:
        return getattr(self, self.check)


class Waiver(BaseModel):
    """An explicit, expiring exception to one rule: who granted it and why. From the day after
    `expires` it no longer waives, and the check says so."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: str = Field(max_length=63)
    models: Annotated[list[str], BeforeValidator(_string_list)] = Field(
        default_factory=lambda: ["*"], min_length=1, max_length=64
    )
    by: Name
    reason: str = Field(min_length=1, max_length=500)
    expires: dt.date

    def active(self, today: dt.date) -> bool:
        return today <= self.expires


class PolicyFile(BaseModel):
    """One YAML policy document: `rules:` plus optional apiVersion/kind for symmetry with specs,
    named approver `groups:` and rule `waivers:`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    apiVersion: str = "mlops/v1"  # the YAML key
    kind: str = "Policy"
    rules: list[Rule] = Field(default_factory=list, max_length=500)
    groups: dict[GroupName, Annotated[list[Name], Field(min_length=1, max_length=500)]] = Field(
        default_factory=dict, max_length=100
    )
    waivers: list[Waiver] = Field(default_factory=list, max_length=500)

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value != "Policy":
            raise ValueError("kind must be 'Policy'")
        return value

    @field_validator("apiVersion")
    @classmethod
    def _api(cls, value: str) -> str:
        if value != "mlops/v1":
            raise ValueError("apiVersion must be 'mlops/v1'")
        return value
