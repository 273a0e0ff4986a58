"""The watch loop: every interval, check each watched model's live drift and the plan's
outside changes; run on_drift once per drift episode; report everything that happened.

Episodes: drift found on NAME@VERSION opens one and runs the spec's on_drift (a command, or
a webhook POST with retries); later rounds that still find drift do nothing more; a round
without drift closes it, and the next drift opens a new one. A notification that failed is
tried again next round until it succeeds, so each episode gets one successful notification.
The episode is written down before the hook runs: after a crash in between, the hook may run
again (at least once), but a restart after it ran never runs it again.

Outside changes are reported, never fixed: `mlops plan` shows what would undo them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops import api, errors
from mlops.watch import state as watch_state


@dataclass(frozen=True)
class Event:
    """One outcome, as logged: `kind` is a stable word (docs/monitoring.md)."""

    kind: str
    message: str
    model: str | None = None
    version: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "kind": self.kind,
            "model": self.model,
            "version": self.version,
            "message": self.message,
            **({"details": self.details} if self.details else {}),
        }


Log = Callable[[Event], None]


@dataclass(frozen=True)
class Options:
    min_rows: int = 100
    hook_timeout: float = 600.0
    outside_changes: bool = True


class Watcher:
    def __init__(
        self, workspace: Path, state_dir: Path, log: Log, options: Options = Options()
    ) -> None:
        self.workspace = workspace
        self.state_dir = state_dir
        self.log = log
        self.options = options
        self.path = self.state_dir / watch_state.FILE
        self.state = watch_state.read(self.path)

    def round(self) -> None:
        """One check of every watched model, then of outside changes; state saved after each."""
        try:
            names = api.drift_watched(self.workspace)
        except errors.MlopsError as exc:
            self.log(Event("error", f"cannot read the specs: {exc.message}"))
            names = []
        for name in names:
            self._model(name)
        if self.options.outside_changes:
            self._outside()

    def _model(self, name: str) -> None:
        try:
            run = api.drift_live(name, workspace=self.workspace, min_rows=self.options.min_rows)
        except errors.MlopsError as exc:
            self.log(Event("no-verdict", exc.message, name))
            return
        key = f"{run.model}@{run.version}"
        for stale in [k for k, e in self.state.episodes.items() if e.model == name and k != key]:
            closed = self.state.episodes.pop(stale)
            self.log(Event("episode-closed", "no longer the serving version", name, closed.version))
        episode = self.state.episodes.get(key)
        stats = {
            f.name: {"sigma": round(f.mean_shift, 4), "psi": f.psi}
            for f in run.result.features
            if f.drifted
        }
        if not run.result.has_drift:
            if episode is not None:
                del self.state.episodes[key]
                self.log(Event("drift-cleared", "drift cleared", name, run.version))
            else:
                self.log(Event("no-drift", f"{run.data}: no drift", name, run.version))
            self._save()
            return
        drifted = [f.name for f in run.result.drifted]
        if episode is None:
            episode = watch_state.Episode(name, run.version, _now(), drifted)
            self.state.episodes[key] = episode
            self.log(
                Event("drift-started", f"drift in {', '.join(drifted)}", name, run.version, stats)
            )
        elif episode.notified:
            self.log(
                Event("drift-continues", f"still drifting: {', '.join(drifted)}", name, run.version)
            )
            return
        self._save()  # the episode is on disk before its hook runs
        self._notify(run, episode)
        self._save()

    def _notify(self, run: api.DriftRun, episode: watch_state.Episode) -> None:
        if run.hook_command is None and run.hook_webhook is None:
            episode.notified = True  # nothing to run: the episode is only logged
            self.log(Event("no-hook", "the spec declares no on_drift", run.model, run.version))
            return

        def attempt(number: int, line: str) -> None:
            self.log(Event("hook-attempt", f"attempt {number}: {line}", run.model, run.version))

        episode.attempts += 1
        try:
            result = api.drift_notify(
                run,
                workspace=self.workspace,
                timeout=self.options.hook_timeout,
                on_attempt=attempt,
            )
        except errors.MlopsError as exc:
            self.log(Event("hook-failed", exc.message, run.model, run.version))
            return
        details: dict[str, Any] = {
            "seconds": round(result.seconds, 3),
            "attempts": result.attempts,
        }
        if result.exit_code is not None:
            details["status"] = result.exit_code
        if result.ok:
            episode.notified = True
            self.log(
                Event("hook-ok", f"on_drift `{result.command}` ok", run.model, run.version, details)
            )
        else:
            details["output"] = result.output[-2000:]
            self.log(
                Event(
                    "hook-failed",
                    f"on_drift `{result.command}` {result.error} (tried again next round)",
                    run.model,
                    run.version,
                    details,
                )
            )

    def _outside(self) -> None:
        try:
            plan = api.plan(str(self.workspace))
        except errors.MlopsError as exc:
            self.log(Event("error", f"plan for outside changes failed: {exc.message}"))
            return
        seen = {
            f"{c.address} {c.field}: expected {c.expected!r}, found {c.actual!r}"
            for c in plan.outside_changes
        }
        before = set(self.state.outside)
        for line in sorted(seen - before):
            self.log(Event("outside-change", f"{line} (not fixed; see mlops plan)"))
        for line in sorted(before - set(seen)):
            self.log(Event("outside-change-gone", line))
        self.state.outside = sorted(seen)
        self._save()

    def _save(self) -> None:
        watch_state.write(self.path, self.state)


def run(watcher: Watcher, interval: float, stop: threading.Event, *, once: bool = False) -> None:
    """Rounds every `interval` seconds until `stop` is set (SIGTERM); the round in progress
    finishes first. A round that fails unexpectedly is logged and the loop goes on."""
    watcher.log(Event("started", f"watching {watcher.workspace} every {interval:g}s"))
    while not stop.is_set():
        try:
            watcher.round()
        except errors.MlopsError as exc:
            watcher.log(Event("error", exc.message))
        if once:
            break
        stop.wait(interval)
    watcher.log(Event("stopped", "stopped" if not once else "one round done"))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
