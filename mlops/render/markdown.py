"""Markdown for a pull-request comment: the summary first, every detail collapsible."""

from __future__ import annotations

import json
from collections.abc import Iterator

from mlops.core import format_duration
from mlops.plan import types as t
from mlops.render import describe

# GitHub colours `diff` blocks by the first character of each line.
_DIFF_PREFIX = {"+": "+", "-": "-", "-/+": "!", "~": "!", "<=": " "}


class MarkdownView:
    def render(self, plan: t.Plan) -> str:
        return "\n".join(self.lines(plan)) + "\n"

    def lines(self, plan: t.Plan) -> Iterator[str]:
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


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;")


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True)
