"""The one view interface: a plan in, text out. Rendering reads the plan; nothing reads it back."""

from __future__ import annotations

import os
import sys
from typing import Protocol, TextIO

from mlops import errors
from mlops.plan import types as t

FORMATS = ("text", "json", "markdown")


class PlanView(Protocol):
    def render(self, plan: t.Plan) -> str:
        """The whole rendering, ending with a newline."""
        ...


def view(fmt: str, *, color: bool = False) -> PlanView:
    """The view for `--format`; imports only the one asked for."""
    if fmt == "text":
        from mlops.render import text

        return text.TextView(color=color)
    if fmt == "json":
        from mlops.render import json

        return json.JsonView()
    if fmt == "markdown":
        from mlops.render import markdown

        return markdown.MarkdownView()
    raise errors.UsageError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")


def use_color(stream: TextIO | None = None) -> bool:
    """Colour only on a terminal, and never with NO_COLOR set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    target = stream if stream is not None else sys.stdout
    isatty = getattr(target, "isatty", None)
    return bool(isatty and isatty())
