"""Progress of an image pipeline: a no-op base that listeners extend (the terminal view below,
a journal, the benchmark's timer)."""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console
from rich.markup import escape


class Hooks:
    """Steps: find, base, engine, build, run, conformance, push. `line` is one line of the
    build or push output, streamed as it comes."""

    def started(self, step: str, detail: str) -> None:
        pass

    def finished(self, step: str, seconds: float, detail: str) -> None:
        pass

    def line(self, step: str, text: str) -> None:
        pass


class TerminalHooks(Hooks):
    """Each step as it starts and ends, the build's own lines dimmed in between (stderr)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.console = Console(file=stream or sys.stderr, highlight=False, soft_wrap=True)

    def started(self, step: str, detail: str) -> None:
        self.console.print(f"[bold]{step}[/bold] {escape(detail)}")

    def finished(self, step: str, seconds: float, detail: str) -> None:
        self.console.print(f"[green]{step} done[/green] in {seconds:.1f}s {escape(detail)}")

    def line(self, step: str, text: str) -> None:
        self.console.print(f"  [dim]{escape(text)}[/dim]")
