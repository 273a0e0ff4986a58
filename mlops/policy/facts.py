"""What a plan does to each model, derived purely from its actions.

Policies judge what the plan will actually do, not what a spec says: the strategy is
inferred from the traffic actions (mirroring first = shadow, partial weights = canary,
straight to 100% = immediate). `reason` is never read (it is display only), nor the
display summary `Plan.models`: a hand-edited summary must not change a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlops.plan import resources
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
    capacity: resources.ModelCapacity | None = None  # the plan's capacity of the model

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
        found.setdefault(action.model, RolloutFacts(name=action.model)).actions.append(action)
    for facts in found.values():
        _derive(facts)
        facts.capacity = plan.capacity.models.get(facts.name)
    return found


def _derive(facts: RolloutFacts) -> None:
    facts.checkpoints = facts.of_kind(Kind.CHECKPOINT_GATE)
    facts.new_version, facts.previous_version = _versions(facts)
    if facts.new_version is None:
        return
    new = facts.new_version
    mirrored = False
    steps: list[Step] = []
    for action in facts.actions:
        after = action.after
        if isinstance(after, plan_types.TrafficPayload):
            if after.shadow is not None and after.shadow.version == new:
                mirrored = mirrored or bool(after.shadow.percent)
            weight = after.weights.get(new, 0)
            if 0 < weight < 100 and (not steps or steps[-1].weight != weight):
                steps.append(Step(weight=weight, action_id=action.id))
        elif isinstance(after, plan_types.CheckpointPayload) and after.canary == new:
            at = after.weight
            if after.shadow:
                mirrored = True
            elif 0 < at < 100:
                if steps and steps[-1].weight == at:
                    last = steps[-1]
                    hold = max(after.hold, last.hold or 0.0)
                    steps[-1] = Step(at, last.action_id, hold, action.id)
                else:
                    # A checkpoint at a weight no action of this plan set: the weight is
                    # already live, so the plan resumes a rollout under way.
                    facts.continuing = facts.continuing or not steps
                    steps.append(Step(at, action.id, after.hold, action.id))
    facts.steps = steps
    if mirrored:
        facts.strategy = rules.RolloutStrategy.SHADOW
    elif steps:
        facts.strategy = rules.RolloutStrategy.CANARY
    else:
        facts.strategy = rules.RolloutStrategy.IMMEDIATE


def _versions(facts: RolloutFacts) -> tuple[str | None, str | None]:
    """(new, previous): new = a checkpoint's canary (its payload names the stable version it
    is compared with), or the version a promotion makes stable when it was not stable before
    (re-promoting the stable version is a restore, not a rollout); previous = the stable
    alias the promotion replaces, or the version the traffic change takes requests from."""
    for checkpoint in facts.checkpoints:
        if isinstance(checkpoint.after, plan_types.CheckpointPayload):
            return checkpoint.after.canary, checkpoint.after.stable
    for promote in facts.of_kind(Kind.PROMOTE):
        after, before = promote.after, promote.before
        if not isinstance(after, plan_types.PromotePayload):
            continue
        new = after.aliases.get("stable")
        old = before.aliases.get("stable") if isinstance(before, plan_types.Aliases) else None
        if new is not None and new != old:
            return new, old or _serving_before(facts, new)
    return None, None


def _serving_before(facts: RolloutFacts, new: str) -> str | None:
    """The version that served most before the plan, from a traffic change's own `before`."""
    for action in facts.of_kind(Kind.SET_TRAFFIC):
        if isinstance(action.before, plan_types.TrafficPayload):
            weights = action.before.weights
            serving = [v for v, w in weights.items() if v != new and w > 0]
            if serving:
                return max(serving, key=lambda v: weights[v])
    return None
