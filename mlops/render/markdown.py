"""Markdown for a pull-request comment: the summary first, every detail collapsible."""

from __future__ import annotations

import json
from collections.abc import Iterator

from mlops.core import format_duration
from mlops.plan import types as t
from mlops.render import base, describe
from mlops.render import capacity as capacity_view

# GitHub colours `diff` blocks by the first character of each line.
_DIFF_PREFIX = {"+": "+", "-": "-", "-/+": "!", "~": "!", "<=": " "}
# The first line of a review comment: CI finds its earlier comment by it and updates that one.
MARKER = "<!-- mlops-plan-comment -->"


class MarkdownView:
    def __init__(self, *, review: base.Review | None = None) -> None:
        self.review = review

    def render(self, plan: t.Plan) -> str:
        return "\n".join(self.lines(plan)) + "\n"

    def lines(self, plan: t.Plan) -> Iterator[str]:
        review = self.review if self.review is not None and self.review.shown else None
        if review is not None:
            yield MARKER
        yield from self._plan(plan)
        if review is not None:
            yield from _review(review)

    def _plan(self, plan: t.Plan) -> Iterator[str]:
        s = plan.summary
        if plan.errors:
            yield "### mlops plan: failed"
            yield ""
            for error in plan.errors:
                yield f"- :x: {_escape(error)}"
            yield ""
        elif plan.actions:
            yield f"### mlops plan: {s.add} to add, {s.change} to change, {s.destroy} to destroy"
            yield ""
        else:
            yield "### mlops plan: no changes"
            yield ""
            yield "Live state matches the specs."
            yield ""
        if plan.models:
            yield "| model | change | from | to | rollout | holds |"
            yield "|---|---|---|---|---|---|"
            for name, change in plan.models.items():
                estimate = plan.estimates.get(name)
                seconds = estimate.rollout_seconds if estimate else 0.0
                holds = format_duration(seconds) if seconds else "-"
                rollout = change.strategy or ""
                if change.weights and change.strategy not in ("config", "restore", "delete"):
                    rollout += f" {describe.weight_path(change)}"
                yield (
                    f"| `{name}` | `{change.symbol}` | {change.from_version or '-'} | "
                    f"{change.to_version or '-'} | {rollout} | {holds} |"
                )
            yield ""
        yield from _capacity(plan)
        for warning in plan.warnings:
            yield "> [!WARNING]"
            yield f"> {_escape(warning)}"
            yield ""
        if plan.outside_changes:
            yield from self._outside(plan.outside_changes)
        by_model: dict[str, list[t.Action]] = {}
        for action in plan.actions:
            by_model.setdefault(action.model, []).append(action)
        for name, actions in by_model.items():
            yield from self._model(plan, name, actions)
        yield (
            f"<sub>spec digest `{plan.spec_digest[:19]}` · state `{plan.state_fingerprint[:19]}` "
            f"· created {plan.created_at}</sub>"
        )

    def _outside(self, changes: list[t.OutsideChange]) -> Iterator[str]:
        yield f"<details><summary>Objects changed outside of mlops ({len(changes)})</summary>"
        yield ""
        yield "| address | field | expected | actual |"
        yield "|---|---|---|---|"
        for change in changes:
            yield (
                f"| `{change.address}` | {change.field} | `{_json(change.expected)}` | "
                f"`{_json(change.actual)}` |"
            )
        yield ""
        yield "</details>"
        yield ""

    def _model(self, plan: t.Plan, name: str, actions: list[t.Action]) -> Iterator[str]:
        change = plan.models.get(name)
        reason = f": {_escape(change.reason)}" if change else ""
        yield f"<details><summary><code>{name}</code>{reason} ({len(actions)} actions)</summary>"
        yield ""
        yield "```diff"
        for action in actions:
            prefix = _DIFF_PREFIX.get(action.symbol, " ")
            yield f"{prefix} {action.kind.value:<16} {action.address}  {describe.action(action)}"
        yield "```"
        for action in actions:
            if action.kind is t.ActionKind.SCALE_ENGINE:
                # It changes every model on the engine: why is shown with it.
                yield ""
                yield f"Engine: {_escape(action.reason)}."
        rollback = plan.rollback.get(name)
        if rollback:
            widest = describe.widest(rollback)
            yield ""
            yield f"On failure: {_escape(describe.rollback(widest))}; the version is rejected."
        yield ""
        yield "</details>"
        yield ""


def _capacity(plan: t.Plan) -> Iterator[str]:
    names = capacity_view.shown(plan)
    if not names:
        return
    total = plan.capacity
    yield "| capacity | replicas | resources | canary peak | rollout |"
    yield "|---|---|---|---|---|"
    for name in names:
        m = total.models[name]
        replicas = str(m.replicas_after)
        if m.replicas_before != m.replicas_after:
            replicas = f"{m.replicas_before} -> {m.replicas_after}"
        peak = (
            capacity_view.resources(m.peak_extra) if m.peak_extra != type(m.peak_extra)() else "-"
        )
        rollout = capacity_view.usage(m.rollout) if m.rollout_seconds else "-"
        yield (
            f"| `{name}` | {replicas} | {capacity_view.change(m.before, m.after)} | "
            f"{'+' + peak if peak != '-' else peak} | {rollout} |"
        )
    peak = capacity_view.resources(total.peak_extra)
    rollout = capacity_view.usage(total.rollout) if total.rollout != type(total.rollout)() else "-"
    yield (
        f"| **total** | | {capacity_view.change(total.before, total.after)} | "
        f"{'+' + peak if peak != 'nothing' else '-'} | {rollout} |"
    )
    yield ""
    priced = capacity_view.cost(total)
    if priced is not None:
        yield f"Cost: {priced}"
        yield ""


def _review(review: base.Review) -> Iterator[str]:
    policy = review.policy
    if policy is not None:
        verdict = "passed" if policy.passed else "failed"
        yield ""
        yield f"#### Policy: {verdict} ({policy.rules} rules from {', '.join(policy.sources)})"
        yield ""
        if policy.violations:
            yield "| | rule | model | what the plan does | why the rule exists |"
            yield "|---|---|---|---|---|"
            for severity, rule, model, detail, message in policy.violations:
                icon = ":x:" if severity == "error" else ":warning:"
                yield (
                    f"| {icon} | `{rule}` | `{model}` | {_escape(detail)} | {_escape(message)} |"
                )
            yield ""
        for rule, model, by, reason, expires in policy.waived:
            yield f"- waived: `{rule}` for `{model}` by {by} until {expires}: {_escape(reason)}"
        for note in policy.notes:
            yield f"- :warning: {_escape(note)}"
        if policy.waived or policy.notes:
            yield ""
    yield "#### Approvals"
    yield ""
    if policy is not None:
        for rule, described, met in policy.approvals:
            icon = ":white_check_mark:" if met else ":hourglass:"
            yield f"- {icon} `{rule}`: {_escape(described)}"
    if review.approvals:
        for by, at, comment in review.approvals:
            yield f"- approved by **{_escape(by)}** at {at}" + (
                f": {_escape(comment)}" if comment else ""
            )
    elif policy is None or not policy.approvals:
        yield "- none yet (`mlops approve PLANFILE --by NAME`)"
    if review.stale_approvals:
        yield (
            f"- {review.stale_approvals} approval(s) of an earlier version of this plan "
            "no longer count"
        )
    yield ""
    yield f"<sub>plan digest `{review.digest}`</sub>"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;")


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True)
