"""`mlops watch`: check live drift and outside changes on a schedule until SIGTERM."""

from __future__ import annotations

import json
import signal
import threading
from typing import Any

import click

from mlops import cli, core
from mlops import workspace as ws_module
from mlops.commands import common
from mlops.watch import loop
from mlops.watch import state as watch_state

EPILOG = """\b
Examples:
  mlops watch                         every minute, until SIGTERM or Ctrl-C
  mlops watch --interval 5m --format json >> watch.log
  mlops watch --once                  one round (cron)

Each round reads, for every model in specs/, the inputs the engine sampled from live traffic
(as `mlops drift NAME --live`) and compares them with the stable version's training
statistics. Drift opens an episode and runs the spec's monitoring.drift.on_drift once: a
command (as `mlops drift --run-hook`), or a JSON POST to a webhook, retried on failure. The
episode stays open, without running on_drift again, until a round finds no drift. Outside
changes (what `mlops plan` lists as changed by hand) are reported, never fixed.
Open episodes are kept in .mlops/watch.json: a restarted watch does not notify again.
SIGTERM ends the loop after the round in progress (exit 0). docs/monitoring.md.
"""


@click.command(epilog=EPILOG, short_help="Watch live drift and outside changes.")
@click.option(
    "--interval",
    default="60s",
    show_default=True,
    help="Time between rounds (e.g. 30s, 5m; at least 1s).",
)
@click.option("--once", is_flag=True, help="Run one round and exit.")
@click.option(
    "--min-rows",
    type=click.IntRange(1, 1 << 20),
    default=100,
    show_default=True,
    help="Sampled rows a model needs before its drift is judged.",
)
@click.option(
    "--hook-timeout",
    type=click.FloatRange(min=1, max=3600),
    default=600.0,
    show_default=True,
    help="Seconds before an on_drift command is killed.",
)
@click.option(
    "--outside-changes/--no-outside-changes",
    default=True,
    show_default=True,
    help="Also report live state changed outside mlops (runs a plan each round).",
)
@common.format_option("Log lines: text, or one JSON object per line.")
@click.pass_context
def command(
    ctx: click.Context,
    interval: str,
    once: bool,
    min_rows: int,
    hook_timeout: float,
    outside_changes: bool,
    fmt: str,
) -> None:
    """Check live drift (and outside changes) every INTERVAL; run on_drift once per episode."""
    try:
        seconds = core.parse_duration(interval)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--interval") from None
    if not 1 <= seconds <= 86_400:
        raise click.BadParameter("must be between 1s and 24h", param_hint="--interval")
    ws = ws_module.open_workspace(cli.run_context(ctx).workspace)

    def log(event: loop.Event) -> None:
        if fmt == "json":
            click.echo(json.dumps(event.to_json(), default=str))
        else:
            click.echo(_text(event))

    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    options = loop.Options(
        min_rows=min_rows, hook_timeout=hook_timeout, outside_changes=outside_changes
    )
    try:
        with watch_state.Lock(ws.state_dir / watch_state.LOCK):
            watcher = loop.Watcher(ws.root, ws.state_dir, log, options)
            loop.run(watcher, seconds, stop, once=once)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _text(event: loop.Event) -> str:
    subject = f" {event.model}@{event.version}" if event.model and event.version else ""
    subject = subject or (f" {event.model}" if event.model else "")
    details: dict[str, Any] = event.details
    extra = f" {json.dumps(details, default=str)}" if details else ""
    return f"{event.at} {event.kind}{subject}: {event.message}{extra}"
