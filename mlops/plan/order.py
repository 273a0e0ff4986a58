"""Expands one model's change into ordered actions, with dependencies and per-step rollback.

`Sequence` numbers actions, chains each to the previous one, and tracks what a failure at
that point would have to undo (traffic, a loaded version, the canary alias), so every action
of a rollout carries the rollback that apply runs if the rollout stops there (a failed check
or gate, or `mlops rollback`). `undo` is the one function that computes a rollback: apply
calls it too when it rolls back a candidate no plan describes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlops.core import Address
from mlops.plan import payloads
from mlops.plan import types as t
from mlops.spec import models as spec
from mlops.state import models as state


@dataclass
class Sequence:
    """Ordered actions of one model and the rollback after each risky one."""

    name: str
    actions: list[t.Action] = field(default_factory=list)
    rollback: dict[str, list[t.Action]] = field(default_factory=dict)
    # What a rollback has to undo, as of the last action added.
    candidate: str | None = None
    stable: str | None = None
    touched_traffic: bool = False
    loaded_candidate: bool = False
    canary_alias: bool = False
    guarded: bool = True  # False once the candidate is promoted: nothing to roll back to

    def add(
        self,
        kind: t.ActionKind,
        address: str,
        symbol: t.ChangeSymbol,
        after: t.AfterPayload,
        *,
        before: t.BeforePayload | None = None,
        reason: str = "",
        tag: str = "",
    ) -> t.Action:
        number = len(self.actions) + 1
        action = t.Action(
            id=f"{self.name}/{number:02d}-{kind}{'-' + tag if tag else ''}",
            address=address,
            model=self.name,
            kind=kind,
            symbol=symbol,
            before=before,
            after=after,
            reason=reason,
            depends_on=[self.actions[-1].id] if self.actions else [],
        )
        self.actions.append(action)
        self._track(action)
        # Any step can be where the rollout stops (a check or gate fails, a person rolls it
        # back): each one carries what undoes it from there.
        if self.guarded and self.candidate:
            undo = self.undo(action.id)
            if undo:
                self.rollback[action.id] = undo
        return action

    def _track(self, action: t.Action) -> None:
        after = action.after
        # The conformance test runs the version loaded.
        if isinstance(after, t.LoadPayload | t.ConformancePayload):
            if after.semver == self.candidate:
                self.loaded_candidate = True
        elif isinstance(after, t.TrafficPayload):
            if self.candidate in after.weights or after.shadow is not None:
                self.touched_traffic = True
        elif isinstance(after, t.PromotePayload):
            if after.aliases.get("canary") == self.candidate:
                self.canary_alias = True
            if after.aliases.get("stable") == self.candidate:
                self.guarded = False

    def undo(self, anchor: str) -> list[t.Action]:
        """The rollback if the rollout stops at `anchor` (see `undo`)."""
        assert self.candidate is not None
        return undo(
            self.name,
            self.candidate,
            self.stable,
            traffic=self.touched_traffic,
            loaded=self.loaded_candidate,
            canary_alias=self.canary_alias,
            anchor=anchor,
        )


def undo(
    name: str,
    candidate: str,
    stable: str | None,
    *,
    traffic: bool,
    loaded: bool,
    canary_alias: bool,
    anchor: str,
    reason: str | None = None,
) -> list[t.Action]:
    """Undo a candidate: weight back to stable first, then unload it, then re-point aliases.

    `traffic`, `loaded`, `canary_alias`: what there is to undo. Apply marks the candidate
    rejected itself, with the gate values that failed (or not, when metrics failed)."""
    steps: list[tuple[t.ActionKind, str, t.ChangeSymbol, t.AfterPayload]] = []
    if traffic:
        # Without a stable version (a first deployment) the model goes back to serving nothing.
        steps.append(
            (
                t.ActionKind.SET_TRAFFIC,
                Address.traffic(name),
                t.ChangeSymbol.UPDATE,
                t.TrafficPayload(weights={stable: 100} if stable else {}, shadow=None),
            )
        )
    if loaded:
        steps.append(
            (
                t.ActionKind.RETIRE,
                Address.version(name, candidate),
                t.ChangeSymbol.DELETE,
                t.RetirePayload(semver=candidate, after_seconds=0.0),
            )
        )
    if canary_alias:
        steps.append(
            (
                t.ActionKind.PROMOTE,
                Address.deployment(name),
                t.ChangeSymbol.UPDATE,
                t.PromotePayload(aliases={"stable": stable} if stable else {}, clear=["canary"]),
            )
        )
    actions: list[t.Action] = []
    suffix = anchor.rsplit("/", 1)[-1].split("-", 1)[0]
    for index, (kind, address, symbol, after) in enumerate(steps, start=1):
        actions.append(
            t.Action(
                id=f"{name}/rollback-{suffix}-{index}-{kind}",
                address=address,
                model=name,
                kind=kind,
                symbol=symbol,
                after=after,
                reason=reason or f"roll back {candidate} if {anchor} fails",
                depends_on=[actions[-1].id] if actions else [],
            )
        )
    return actions


def traffic(stable: str | None, candidate: str, weight: int) -> dict[str, int]:
    """Weight table at one step; at 100 the old version leaves the table but stays loaded."""
    if weight >= 100 or not stable:
        return {candidate: 100}
    return {stable: 100 - weight, candidate: weight}


def weights_text(weights: dict[str, int]) -> str:
    return ", ".join(f"{v} {w}%" for v, w in weights.items())


def expand_rollout(
    seq: Sequence,
    deployment: spec.ModelDeployment,
    *,
    from_weight: int = 0,
    shadow_phase: bool = True,
    recheck_current: bool = False,
) -> t.Estimate:
    """Shadow phase, weight steps with their gates, for a candidate that is loaded.

    Returns the estimate without a request count (the caller knows the traffic rate).
    """
    rollout = deployment.spec.rollout
    candidate = deployment.spec.model.version
    stable = seq.stable
    address = Address.traffic(seq.name)
    seconds = 0.0
    if shadow_phase and rollout.shadow is not None and stable and from_weight == 0:
        percent = rollout.shadow.percent
        seq.add(
            t.ActionKind.SET_TRAFFIC,
            address,
            t.ChangeSymbol.UPDATE,
            t.TrafficPayload(
                weights={stable: 100},
                shadow=state.ShadowRoute(version=candidate, percent=percent),
            ),
            reason=f"mirror {percent}% of requests to {candidate}; {stable} still answers",
            tag="shadow",
        )
        if rollout.shadow.hold > 0:
            seq.add(
                t.ActionKind.CHECKPOINT_GATE,
                address,
                t.ChangeSymbol.READ,
                payloads.checkpoint(
                    deployment, stable=stable, weight=0, hold=rollout.shadow.hold, shadow=True
                ),
                reason="shadow phase: compare predictions before any user sees the new version",
                tag="shadow",
            )
            seconds += rollout.shadow.hold
    for step in rollout.steps:
        if step.weight < from_weight or (step.weight == from_weight and not recheck_current):
            continue
        if step.weight > from_weight:
            weights = traffic(stable, candidate, step.weight)
            seq.add(
                t.ActionKind.SET_TRAFFIC,
                address,
                t.ChangeSymbol.UPDATE,
                t.TrafficPayload(weights=weights, shadow=None),
                reason=f"move {step.weight}% of traffic to {candidate}",
                tag=str(step.weight),
            )
        if step.hold > 0:
            seq.add(
                t.ActionKind.CHECKPOINT_GATE,
                address,
                t.ChangeSymbol.READ,
                payloads.checkpoint(
                    deployment, stable=stable, weight=step.weight, hold=step.hold, shadow=False
                ),
                reason=f"hold at {step.weight}% and check the gates",
                tag=str(step.weight),
            )
            seconds += step.hold
    return t.Estimate(rollout_seconds=seconds)


def canary_requests(
    deployment: spec.ModelDeployment, rate: float | None, *, from_weight: int = 0
) -> float | None:
    """Requests the candidate sees over the holds at the current traffic rate (req/s)."""
    if rate is None:
        return None
    rollout = deployment.spec.rollout
    total = 0.0
    if rollout.shadow is not None and from_weight == 0:
        total += rollout.shadow.percent / 100 * rollout.shadow.hold * rate
    for step in rollout.steps:
        if step.weight >= from_weight:
            total += step.weight / 100 * step.hold * rate
    return total
