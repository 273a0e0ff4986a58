"""`mlops promote NAME`: resume a paused rollout; the human decision is journaled."""

from __future__ import annotations

import sys

import click

from mlops import api, cli
from mlops.commands import apply as apply_cmd

EPILOG = """\b
Example:
  mlops promote fraud-scorer

The rollout paused because a gate stayed inconclusive (e.g. too few requests) at the end of
a hold. Promote records that you treat that checkpoint as passed, then continues with the
next steps, holding and checking gates as planned. Exit codes as for apply: 0, 1, 3, 4.
"""


@click.command(epilog=EPILOG, short_help="Resume a paused rollout.")
@click.argument("name")
@apply_cmd.lock_timeout_option
@click.pass_context
def command(ctx: click.Context, name: str, lock_timeout: str) -> None:
    """Resume NAME's paused rollout from its paused checkpoint."""
    run = cli.run_context(ctx)
    result = api.promote(
        name,
        workspace=run.workspace,
        lock_timeout=apply_cmd.parse_lock_timeout(lock_timeout),
        listeners=[api.progress_view(sys.stderr)],
    )
    apply_cmd.finish(result)
