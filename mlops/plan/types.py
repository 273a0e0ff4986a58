"""Plan data types: a closed set of action kinds, actions, the plan itself.

`reason` is for display only; nothing decides on it. `before`/`after` are JSON objects whose
keys are fixed per kind (see `ActionKind`); apply reads `after` (and `params`) and nothing else.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PLAN_FORMAT_VERSION = 1


class ActionKind(StrEnum):
    """What one step does. Payload keys of `after` per kind:

    - register          {"semver", "artifact" (workspace path or models:/ URI), "sha256"|None,
                         "validation"|None}
    - verify            {"semver", "sha256"}                      re-hash the stored artifact
    - conformance_test  {"semver", "metric", "baseline", "tolerance", "p99_ms", "max_increase"}
    - build_image       {"semver", "image"}                       (kubernetes target)
    - load              {"semver", "settings": {...engine settings.json...}, "replicas"}
                        (a reload of tampered bytes: symbol -/+, settings["sha256"] set)
    - set_traffic       {"weights": {semver: int}, "shadow": {"version", "percent"}|None}
    - checkpoint_gate   {"stable", "canary", "weight", "hold", "interval", "min_requests",
                         "consecutive_errors", "gates": [Gate as dict], "shadow": bool}
    - promote           {"aliases": {"stable": semver}, "clear": ["canary"]}
    - retire            {"semver", "after_seconds"}               unload the previous version
    - update_config     {"semver", "settings", "replicas"}        in-place batching/replicas
    - delete            {"name"}                                  unload everything, drop routes
    """

    REGISTER = "register"
    VERIFY = "verify"
    CONFORMANCE_TEST = "conformance_test"
    BUILD_IMAGE = "build_image"
    LOAD = "load"
    SET_TRAFFIC = "set_traffic"
    CHECKPOINT_GATE = "checkpoint_gate"
    PROMOTE = "promote"
    RETIRE = "retire"
    UPDATE_CONFIG = "update_config"
    DELETE = "delete"


class ChangeSymbol(StrEnum):
    """How an action renders, Terraform-style."""

    CREATE = "+"
    UPDATE = "~"
    DELETE = "-"
    REPLACE = "-/+"
    READ = "<="  # checks and gates: no change to state by themselves


class Action(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str  # unique within the plan, e.g. "fraud-scorer/03-set_traffic-5"
    address: str  # mlops.core.Address
    kind: ActionKind
    symbol: ChangeSymbol
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    reason: str = ""  # display only
    depends_on: list[str] = Field(default_factory=list)


class OutsideChange(BaseModel):
    """Live state that differs from what mlops last applied (changed by hand)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str
    field: str
    expected: Any = None
    actual: Any = None


class Estimate(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rollout_seconds: float = 0.0  # sum of holds (and shadow phase)
    canary_requests: float | None = None  # expected requests the canary sees at the current rate


class Summary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    add: int = 0
    change: int = 0
    destroy: int = 0
    models: int = 0


class ModelChange(BaseModel):
    """One model's change at a glance, for renderers (the actions hold the detail)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    symbol: ChangeSymbol
    from_version: str | None = None  # stable before the plan
    to_version: str | None = None  # stable after the plan (None: deleted)
    strategy: str | None = None  # canary | shadow | immediate | first | config | restore | delete
    weights: list[int] = Field(default_factory=list)  # canary weight steps, e.g. [5, 10, 50, 100]
    shadow_percent: int | None = None
    reason: str = ""  # display only


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: int = PLAN_FORMAT_VERSION
    created_at: str  # ISO 8601, set by the caller (diff is clock-free)
    workspace: str
    spec_digest: str
    state_fingerprint: str
    actions: list[Action] = Field(default_factory=list)
    # For each model, and for each action id after which a gate can fail: the actions that
    # undo the rollout from that point (weight to 0 first, then unload, aliases, reject).
    rollback: dict[str, dict[str, list[Action]]] = Field(default_factory=dict)
    outside_changes: list[OutsideChange] = Field(default_factory=list)
    estimates: dict[str, Estimate] = Field(default_factory=dict)
    summary: Summary = Summary()
    errors: list[str] = Field(default_factory=list)
    # Display-only notes a reviewer must see (e.g. a model without a spec that was not deleted).
    warnings: list[str] = Field(default_factory=list)
    models: dict[str, ModelChange] = Field(default_factory=dict)
    # The models whose live state the fingerprint covers: apply refreshes exactly these to
    # decide whether the plan is stale.
    refreshed: list[str] = Field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        return bool(self.actions)
