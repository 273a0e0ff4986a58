"""Terraform-like text: outside changes first, then each model's actions, then the summary."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import click

from mlops.core import format_duration
from mlops.plan import types as t
from mlops.render import base, describe
from mlops.render import capacity as capacity_view

_COLORS = {"+": "green", "~": "yellow", "-": "red", "-/+": "magenta", "<=": "cyan"}
_KIND_WIDTH = max(len(k.value) for k in t.ActionKind)


class TextView:
    def __init__(self, *, color: bool = False, review: base.Review | None = None) -> None:
        self.color = color
        self.review = review

    def render(self, plan: t.Plan) -> str:
        lines = list(self.lines(plan))
        if self.review is not None and self.review.shown:
            lines.extend(self._review(self.review))
        return "\n".join(lines) + "\n"

    def _review(self, review: base.Review) -> Iterator[str]:
        yield ""
        policy = review.policy
        if policy is not None:
            verdict = "passed" if policy.passed else "failed"
            yield self._style(f"Policy: {verdict}", bold=True) + (
                f" ({policy.rules} rules from {', '.join(policy.sources)})"
            )
            for severity, rule, model, detail, _ in policy.violations:
                yield f"  {severity.upper():<8} {rule}  {model}: {detail}"
            for rule, model, by, reason, expires in policy.waived:
                yield f"  waived   {rule}  {model}: by {by} until {expires}: {reason}"
            for note in policy.notes:
                yield f"  note     {note}"
        yield self._style("Approvals:", bold=True) + f" (plan digest {review.digest})"
        if policy is not None:
            for rule, described, met in policy.approvals:
                yield f"  {'met    ' if met else 'pending'}  {rule}: {described}"
        for by, at, comment in review.approvals:
            yield f"  approved by {by} at {at}" + (f": {comment}" if comment else "")
        if not review.approvals:
            yield "  none yet (mlops approve PLANFILE --by NAME)"
        if review.stale_approvals:
            yield f"  {review.stale_approvals} approval(s) of an earlier version of this plan"

    def _style(self, text: str, **kwargs: Any) -> str:
        return click.style(text, **kwargs) if self.color else text

    def _symbol(self, symbol: str) -> str:
        return self._style(f"{symbol:>3}", fg=_COLORS.get(symbol), bold=True)

    def lines(self, plan: t.Plan) -> Iterator[str]:
        for error in plan.errors:
            yield self._style("Error: ", fg="red", bold=True) + error
        if plan.outside_changes:
            yield from self._outside(plan.outside_changes)
        for warning in plan.warnings:
            yield self._style("Warning: ", fg="yellow", bold=True) + warning
            yield ""
        if not plan.actions:
            if not plan.errors:
                yield self._style("No changes.", bold=True) + " Live state matches the specs."
            return
        yield "mlops will perform the following actions:"
        yield ""
        by_model: dict[str, list[t.Action]] = {}
        for action in plan.actions:
            by_model.setdefault(action.model, []).append(action)
        for name, actions in by_model.items():
            yield from self._model(plan, name, actions)
        yield from self._capacity(plan)
        s = plan.summary
        yield self._style(
            f"Plan: {s.add} to add, {s.change} to change, {s.destroy} to destroy.", bold=True
        )

    def _capacity(self, plan: t.Plan) -> Iterator[str]:
        names = capacity_view.shown(plan)
        if not names:
            return
        total = plan.capacity
        yield self._style("Capacity", bold=True) + " (replicas x serving.hardware):"
        width = max(len(n) for n in names)
        for name in names:
            yield f"  {name:<{width}}  {capacity_view.model_line(total.models[name])}"
        yield f"  total: {capacity_view.change(total.before, total.after)}" + (
            f"; canary peak +{capacity_view.resources(total.peak_extra)}"
            if total.peak_extra.cpu or total.peak_extra.accelerators
            else ""
        )
        if total.rollout.cpu_hours or total.rollout.accelerator_hours:
            yield f"  rollout: {capacity_view.usage(total.rollout)}"
        priced = capacity_view.cost(total)
        if priced is not None:
            yield f"  cost: {priced}"
        yield ""

    def _outside(self, changes: list[t.OutsideChange]) -> Iterator[str]:
        yield self._style("Objects have changed outside of mlops", bold=True)
        yield ""
        yield "mlops detected the following changes made since the last apply:"
        yield ""
        for change in changes:
            yield f"  {self._symbol('~')} {change.address}: {change.field}"
            yield f"        expected: {_json(change.expected)}"
            yield f"        actual:   {_json(change.actual)}"
        yield ""
        yield "They are shown for review; the actions below start from the state as it is now."
        yield ""

    def _model(self, plan: t.Plan, name: str, actions: list[t.Action]) -> Iterator[str]:
        change = plan.models.get(name)
        if change is not None:
            yield f"  # deployment.{name}: {change.reason}"
            yield f"{self._symbol(change.symbol)} deployment.{name}{self._headline(change)}"
        if change is not None and change.symbol == "-":
            yield self._style(
                f"      !! deployment.{name} will be DESTROYED: every version unloaded, "
                "routes and aliases dropped",
                fg="red",
                bold=True,
            )
        for action in actions:
            detail = describe.action(action)
            address = action.address
            yield (
                f"    {self._symbol(action.symbol)} {action.kind.value:<{_KIND_WIDTH}}  "
                f"{address}{'  ' + detail if detail else ''}"
            )
            if action.kind is t.ActionKind.SCALE_ENGINE:
                # It changes every model on the engine: why is shown with it.
                yield f"        # {action.reason}"
        rollback = plan.rollback.get(name)
        if rollback:
            undo = describe.rollback(describe.widest(rollback))
            yield f"      on failure: {undo}; mark it rejected"
        estimate = plan.estimates.get(name)
        if estimate is not None and estimate.rollout_seconds:
            text = f"      estimate: {format_duration(estimate.rollout_seconds)} of holds"
            if estimate.canary_requests is not None:
                text += f", ~{estimate.canary_requests:,.0f} requests to the new version"
            yield text
        yield ""

    @staticmethod
    def _headline(change: t.ModelChange) -> str:
        if change.symbol == "-":
            return f"  {change.from_version or ''}".rstrip()
        versions = change.to_version or ""
        if change.from_version and change.from_version != change.to_version:
            versions = f"{change.from_version} -> {change.to_version}"
        text = f"  {versions}"
        if change.weights and change.strategy not in ("config", "restore"):
            text += f"  ({change.strategy}: {describe.weight_path(change)})"
        return text


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True)
