"""`mlops down`: stop the local target's processes (engine workers, Prometheus)."""

from __future__ import annotations

import click

from mlops import cli
from mlops.commands import common

EPILOG = """\b
Examples:
  mlops down                 stop the engine and Prometheus of this workspace
  mlops -C demo/ down --format json

Only processes this workspace started (recorded in .mlops/) are stopped. Running it when
nothing runs is not an error. The registry, staged models and Prometheus data are kept.
"""


@click.command(epilog=EPILOG, short_help="Stop the local target's processes.")
@common.format_option(
    'text: one line per process; json: {"engine": bool, "prometheus": bool}, and '
    '"containers": bool with serve.runtime: container.'
)
@click.pass_context
def command(ctx: click.Context, fmt: str) -> None:
    """Stop the engine processes and Prometheus started for this workspace. Idempotent."""
    from mlops import api

    stopped = api.down(workspace=cli.run_context(ctx).workspace)
    if fmt == "json":
        common.echo_json(stopped, indent=None)
        return
    for name, was_running in stopped.items():
        click.echo(f"{name}: {'stopped' if was_running else 'not running'}")
