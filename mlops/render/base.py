"""The one view interface: a plan in, text out. Rendering reads the plan; nothing reads it back."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Protocol, TextIO

from mlops import errors
from mlops.plan import types as t

FORMATS = ("text", "json", "markdown")


@dataclass(frozen=True)
class ReviewPolicy:
    """A policy check's result as a reviewer reads it (plain values: render does not import
    the policy package)."""

    sources: tuple[str, ...]
    rules: int
    passed: bool
    violations: list[tuple[str, str, str, str, str]]  # severity, rule, model, detail, message
    approvals: list[tuple[str, str, bool]]  # rule, "1 of 2 approval(s) from sre (...)", met
    waived: list[tuple[str, str, str, str, str]]  # rule, model, by, reason, expires
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Review:
    """What is shown with a saved plan besides the plan: its digest, the approvals of that
    digest (by, at, comment), how many approvals are of other content, the policy result."""

    digest: str
    approvals: list[tuple[str, str, str]]
    stale_approvals: int = 0
    policy: ReviewPolicy | None = None

    @property
    def shown(self) -> bool:
        """Worth a section: approvals exist, or a policy result was asked for."""
        return bool(self.approvals or self.stale_approvals or self.policy)


class PlanView(Protocol):
    def render(self, plan: t.Plan) -> str:
        """The whole rendering, ending with a newline."""
        ...


def view(fmt: str, *, color: bool = False, review: Review | None = None) -> PlanView:
    """The view for `--format`; imports only the one asked for. `review` (approvals, policy)
    is shown by the text and markdown views; the JSON view is the plan document alone."""
    if fmt == "text":
        from mlops.render import text

        return text.TextView(color=color, review=review)
    if fmt == "json":
        from mlops.render import json

        return json.JsonView()
    if fmt == "markdown":
        from mlops.render import markdown

        return markdown.MarkdownView(review=review)
    raise errors.UsageError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")


def use_color(stream: TextIO | None = None) -> bool:
    """Colour only on a terminal, and never with NO_COLOR set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    target = stream if stream is not None else sys.stdout
    isatty = getattr(target, "isatty", None)
    return bool(isatty and isatty())
