"""`mlops approve PLANFILE --by NAME`: sign off the exact content of a saved plan."""

from __future__ import annotations

from pathlib import Path

import click

from mlops import api, cli

EPILOG = """\b
Examples:
  mlops plan specs/ -o plans/release.json
  mlops approve plans/release.json --by alice --comment "canary steps look right"
  mlops apply plans/release.json

The approval is recorded in PLANFILE.approvals.json, bound to the plan's digest (sha256 of
its canonical content): a plan changed afterwards needs new approvals. A policy rule
`require_approvals` (docs/policy.md) makes apply refuse a plan without enough of them.
"""


@click.command(epilog=EPILOG, short_help="Approve a saved plan (bound to its digest).")
@click.argument("planfile", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--by", "by", required=True, help="Who approves (a login: letters, digits, ._@+-).")
@click.option("--comment", default="", help="One line, at most 500 characters.")
@click.pass_context
def command(ctx: click.Context, planfile: Path, by: str, comment: str) -> None:
    """Record NAME's approval of PLANFILE's content beside it."""
    record = api.approve(planfile, by, comment, workspace=cli.run_context(ctx).workspace)
    click.echo(
        f"Approved {planfile} ({record.digest[:19]}…) by {by}; approvers of this plan: "
        f"{', '.join(record.approvers)}"
    )
