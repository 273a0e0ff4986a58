"""What a plan does to each model, derived purely from its actions.

Policies judge what the plan will actually do, not what a spec says: the strategy is
inferred from the traffic actions (mirroring first = shadow, partial weights = canary,
straight to 100% = immediate). `reason` is never read (it is display only), nor the
display summary `Plan.models`: a hand-edited summary must not change a verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlops import core
from mlops.plan import types as plan_types
from mlops.policy import rules

Kind = plan_types.ActionKind


@dataclass(frozen=True)
class Step:
    """One partial-traffic step of a rollout: the new version's weight and its checkpoint."""

    weight: int
    action_id: str
    hold: float | None = None  # None: no checkpoint gate follows this step
    checkpoint_id: str | None = None


@dataclass
class RolloutFacts:
    name: str
    new_version: str | None = None  # the version this plan makes stable (None: no rollout)
    previous_version: str | None = None  # the version serving before; None = first deployment
    strategy: rules.RolloutStrategy | None = None  # None = the plan rolls nothing out
    continuing: bool = False  # resumes a rollout already under way (its first steps are done)
    steps: list[Step] = field(default_factory=list)
    checkpoints: list[plan_types.Action] = field(default_factory=list)
    actions: list[plan_types.Action] = field(default_factory=list)

    @property
    def is_update(self) -> bool:
        """A rollout that takes traffic away from a serving version: the one policies protect."""
        return self.strategy is not None and self.previous_version is not None

    def of_kind(self, kind: plan_types.ActionKind) -> list[plan_types.Action]:
        return [a for a in self.actions if a.kind is kind]


def model_facts(plan: plan_types.Plan) -> dict[str, RolloutFacts]:
    """Group the plan's actions by model and derive each model's rollout, in plan order."""
    found: dict[str, RolloutFacts] = {}
    for action in plan.actions:
        name = _model_of(action)
        found.setdefault(name, RolloutFacts(name=name)).actions.append(action)
    for facts in found.values():
        _derive(facts)
    return found


def _model_of(action: plan_types.Action) -> str:
    if action.kind is Kind.DELETE and action.after and isinstance(action.after.get("name"), str):
        return str(action.after["name"])
    return core.Address(action.address).model


def _after(action: plan_types.Action) -> dict[str, Any]:
    return action.after or {}


def _weights(payload: Mapping[str, Any] | None) -> dict[str, int]:
    raw = (payload or {}).get("weights") or {}
    return {str(k): int(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}


def _stable_alias(payload: Mapping[str, Any] | None) -> str | None:
    aliases = (payload or {}).get("aliases")
    stable = aliases.get("stable") if isinstance(aliases, Mapping) else None
    return stable if isinstance(stable, str) else None


def _derive(facts: RolloutFacts) -> None:
    facts.checkpoints = facts.of_kind(Kind.CHECKPOINT_GATE)
    facts.new_version, facts.previous_version = _versions(facts)
    if facts.new_version is None:
        return
    new = facts.new_version
    mirrored = False
    steps: list[Step] = []
    for action in facts.actions:
        after = _after(action)
        if action.kind is Kind.SET_TRAFFIC:
            shadow = after.get("shadow")
            if isinstance(shadow, Mapping) and shadow.get("version") == new:
                mirrored = mirrored or bool(shadow.get("percent", 0))
            weight = _weights(after).get(new, 0)
            if 0 < weight < 100 and (not steps or steps[-1].weight != weight):
                steps.append(Step(weight=weight, action_id=action.id))
        elif action.kind is Kind.CHECKPOINT_GATE and after.get("canary") in (new, None):
            at = after.get("weight")
            if after.get("shadow"):
                mirrored = True
            elif isinstance(at, int) and 0 < at < 100:
                hold = float(after.get("hold") or 0.0)
                if steps and steps[-1].weight == at:
                    last = steps[-1]
                    steps[-1] = Step(at, last.action_id, max(hold, last.hold or 0.0), action.id)
                else:
                    # A checkpoint at a weight no action of this plan set: the weight is
                    # already live, so the plan resumes a rollout under way.
                    facts.continuing = facts.continuing or not steps
                    steps.append(Step(at, action.id, hold, action.id))
    facts.steps = steps
    if mirrored:
        facts.strategy = rules.RolloutStrategy.SHADOW
    elif steps:
        facts.strategy = rules.RolloutStrategy.CANARY
    else:
        facts.strategy = rules.RolloutStrategy.IMMEDIATE


def _versions(facts: RolloutFacts) -> tuple[str | None, str | None]:
    """(new, previous): new = a checkpoint's canary, or the version a promotion makes stable
    when it was not stable before (re-promoting the stable version is a restore, not a rollout)."""
    for checkpoint in facts.checkpoints:
        after = _after(checkpoint)
        if isinstance(after.get("canary"), str):
            stable = after.get("stable")
            return after["canary"], stable if isinstance(stable, str) else None
    for promote in facts.of_kind(Kind.PROMOTE):
        new = _stable_alias(promote.after)
        old = _stable_alias(promote.before)
        if new is not None and new != old:
            return new, old or _serving_before(facts, new)
    return None, None


def _serving_before(facts: RolloutFacts, new: str) -> str | None:
    for action in facts.of_kind(Kind.SET_TRAFFIC):
        weights = _weights(action.before)
        serving = [v for v, w in weights.items() if v != new and w > 0]
        if serving:
            return max(serving, key=lambda v: weights[v])
    return None
