"""`mlops unlock LOCK_ID`: release a workspace lock left by a run that died."""

from __future__ import annotations

import click

from mlops import api, cli

EPILOG = """\b
Example:
  mlops unlock 3fa2b9c1

The id is in the error apply prints when the workspace is locked, and in `mlops status`.
Only release a lock whose holder is no longer running; a re-run of the same apply then
resumes where the dead run stopped.
"""


@click.command(epilog=EPILOG, short_help="Release a stale workspace lock.")
@click.argument("lock_id")
@click.pass_context
def command(ctx: click.Context, lock_id: str) -> None:
    """Release the workspace lock LOCK_ID."""
    run = cli.run_context(ctx)
    released = api.unlock(lock_id, workspace=run.workspace)
    click.echo(f"released lock {released.id} held by {released.holder} since {released.since}")
