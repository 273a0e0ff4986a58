"""The terminal view of an apply run: one line per event, plus a live status line on a TTY.

On a terminal a rich Live panel shows the current step, weights, the latest gate values and
the time left in the hold; in a pipe or CI log every event is one plain, greppable line.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from typing import IO, Any

from mlops import core
from mlops.apply import hooks
from mlops.gates import evaluate as gates
from mlops.plan import types as plan_types

_VERDICT_STYLE = {"passed": "green", "failed": "red", "error": "magenta", "inconclusive": "yellow"}


def _where(checkpoint: Mapping[str, Any]) -> str:
    """A shadow hold judges mirrored requests at weight 0: say so rather than "at 0%"."""
    if checkpoint.get("shadow"):
        return "in the shadow phase (mirrored requests)"
    return f"at {checkpoint.get('weight')}%"


def weights_text(weights: Mapping[str, int]) -> str:
    return ", ".join(f"{v}={w}%" for v, w in sorted(weights.items())) or "no traffic"


def measurement_text(m: gates.Measurement) -> str:
    value = "n/a" if m.value is None else f"{m.value:.4g}"
    return f"{m.gate}={value} [{m.verdict.value}] ({m.threshold}; {m.detail})"


class Progress(hooks.Hook):
    """Prints events; `live` (default: stream is a TTY) adds the rich status panel."""

    def __init__(self, stream: IO[str] | None = None, live: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.is_tty = self.stream.isatty() if live is None else live
        self._state: dict[str, Any] = {}
        self._live: Any = None
        self._console: Any = None
        if self.is_tty:
            from rich.console import Console

            self._console = Console(file=self.stream)

    # -- output -------------------------------------------------------------------------------

    def _line(self, text: str, style: str | None = None) -> None:
        if self._console is not None:
            self._console.print(text, style=style, highlight=False, markup=False)
        else:
            stamp = time.strftime("%H:%M:%S")
            self.stream.write(f"{stamp} {text}\n")
            self.stream.flush()

    def _refresh(self) -> None:
        if self._live is None:
            return
        from rich.table import Table

        table = Table.grid(padding=(0, 2))
        model = self._state.get("model", "")
        table.add_row("model", model)
        table.add_row("step", str(self._state.get("step", "")))
        table.add_row("weights", weights_text(self._state.get("weights", {})))
        left = self._state.get("remaining")
        if left is not None:
            table.add_row("hold left", core.format_duration(max(float(left), 0.0)))
        for m in self._state.get("measurements", []):
            style = _VERDICT_STYLE.get(m.verdict.value, "")
            table.add_row(m.gate, f"[{style}]{measurement_text(m)}[/{style}]")
        self._live.update(table)

    def _start_live(self) -> None:
        if self._console is not None and self._live is None:
            from rich.live import Live

            self._live = Live(console=self._console, refresh_per_second=4, transient=True)
            self._live.start()

    def _stop_live(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    # -- events -------------------------------------------------------------------------------

    def on_run_start(self, run_id: str, plan: plan_types.Plan, resumed: bool) -> None:
        verb = "Resuming" if resumed else "Applying"
        self._line(f"{verb} run {run_id}: {len(plan.actions)} action(s)", "bold")

    def on_action_start(self, action: plan_types.Action) -> None:
        self._state.update(model=core.Address(action.address).model, step=action.id)
        self._line(f"{action.address}: {action.kind.value} ({action.id}) ...")
        self._refresh()

    def on_action_end(self, action: plan_types.Action, outcome: str, detail: str = "") -> None:
        self._stop_live()
        style = {"failed": "red", "skipped": "yellow"}.get(outcome, "green")
        suffix = f": {detail}" if detail else ""
        self._line(f"{action.address}: {action.kind.value} {outcome}{suffix}", style)

    def on_weight(self, model: str, weights: Mapping[str, int], generation: int) -> None:
        self._state["weights"] = dict(weights)
        self._line(f"{model}: traffic {weights_text(weights)} (generation {generation})", "cyan")
        self._refresh()

    def on_hold_start(self, model: str, checkpoint: Mapping[str, Any], remaining: float) -> None:
        self._state.update(remaining=remaining, measurements=[])
        self._line(
            f"{model}: holding {_where(checkpoint)} for "
            f"{core.format_duration(remaining)}, gates every "
            f"{core.format_duration(float(checkpoint.get('interval') or 0))}"
        )
        self._start_live()
        self._refresh()

    def on_measurement(
        self,
        model: str,
        checkpoint: Mapping[str, Any],
        measurements: Sequence[gates.Measurement],
        decision: gates.Decision,
    ) -> None:
        self._state["measurements"] = list(measurements)
        summary = "; ".join(measurement_text(m) for m in measurements) or "no gates"
        self._line(f"{model}: gates {_where(checkpoint)}: {summary} -> {decision}")
        self._refresh()

    def on_hold_tick(self, model: str, elapsed: float, remaining: float) -> None:
        self._state["remaining"] = remaining
        self._refresh()

    def on_rollback(self, model: str, canary: str, reason: str) -> None:
        self._stop_live()
        self._line(f"{model}: ROLLING BACK {canary}: {reason}", "bold red")

    def on_pause(self, model: str, checkpoint_id: str, reason: str) -> None:
        self._stop_live()
        self._line(
            f"{model}: PAUSED at {checkpoint_id}: {reason}. Resume with `mlops promote {model}` "
            f"or undo with `mlops rollback {model}`",
            "bold yellow",
        )

    def on_decision(self, model: str, decision: str, who: str) -> None:
        self._line(f"{model}: {decision} by {who}", "bold")

    def on_message(self, text: str) -> None:
        self._line(text)

    def on_run_end(self, outcome: str) -> None:
        self._stop_live()
        self._line(f"Apply {outcome}.", "bold")
