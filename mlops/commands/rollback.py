"""`mlops rollback NAME`: roll a rollout back now."""

from __future__ import annotations

import sys

import click

from mlops import api, cli
from mlops.commands import apply as apply_cmd

EPILOG = """\b
Example:
  mlops rollback fraud-scorer

The canary's weight goes to 0 first (confirmed on every engine replica), then it is
unloaded, the registry aliases point back at the stable version and the canary is marked
rejected. Works on a paused rollout, an interrupted one, or a canary found in live state.
"""


@click.command(epilog=EPILOG, short_help="Roll a rollout back now.")
@click.argument("name")
@apply_cmd.lock_timeout_option
@click.pass_context
def command(ctx: click.Context, name: str, lock_timeout: str) -> None:
    """Roll NAME's canary back now."""
    run = cli.run_context(ctx)
    result = api.rollback(
        name,
        workspace=run.workspace,
        lock_timeout=apply_cmd.parse_lock_timeout(lock_timeout),
        listeners=[api.progress_view(sys.stderr)],
    )
    stable = result.stable or "no version"
    click.echo(f"{name}: rolled back {result.canary}; traffic on {stable}")
