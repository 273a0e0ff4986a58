"""`mlops show PLANFILE`: render a saved plan; reads nothing else."""

from __future__ import annotations

from pathlib import Path

import click

from mlops import api, cli
from mlops.commands import common
from mlops.render import base

EPILOG = """\b
Examples:
  mlops show plans/release.json
  mlops show plans/release.json --format markdown > comment.md
  mlops show plans/release.json --format json | jq '.summary'
"""


@click.command(epilog=EPILOG, short_help="Render a saved plan file.")
@click.argument("planfile", type=click.Path(dir_okay=False, path_type=Path))
@common.format_option(
    "text (Terraform-like), json (docs/plan-json.md) or markdown (a PR comment).",
    base.FORMATS,
)
@click.pass_context
def command(ctx: click.Context, planfile: Path, fmt: str) -> None:
    """Render PLANFILE (written by `mlops plan -o`) exactly as `mlops plan` printed it.

    With `mlops -C DIR`, PLANFILE is found as `apply` finds it (relative to DIR)."""
    plan = api.show(planfile, workspace=cli.run_context(ctx).workspace)
    click.echo(base.view(fmt, color=base.use_color()).render(plan), nl=False)
