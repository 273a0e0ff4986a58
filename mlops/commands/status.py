"""`mlops status [NAME]`: what is serving now, and any rollout in progress."""

from __future__ import annotations

import click

from mlops import api, cli
from mlops.commands import common

EPILOG = """\b
Examples:
  mlops status
  mlops status fraud-scorer --format json | jq .models[].weights

Shows each model's versions (registered, loaded, weight, rejected), stable and canary
aliases, engine replicas, the rollout in progress with its step and the latest gate rounds
(each value with the routed or, in a shadow phase, mirrored requests it stands on), and the
workspace lock if one is held. The JSON document is described in docs/status.md.
"""


@click.command(epilog=EPILOG, short_help="Live versions, weights, gate history, rollouts.")
@click.argument("name", required=False)
@common.format_option("text for people, json for tools.")
@click.pass_context
def command(ctx: click.Context, name: str | None, fmt: str) -> None:
    """Live versions, weights, replicas, gate history and the current rollout."""
    run = cli.run_context(ctx)
    document = api.status(name, workspace=run.workspace)
    if fmt == "json":
        common.echo_json(document)
    else:
        click.echo(api.status_text(document), nl=False)
