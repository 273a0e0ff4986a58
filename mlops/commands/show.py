"""`mlops show PLANFILE`: render a saved plan, its approvals and (asked) the policy result."""

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
  mlops show plans/release.json --format markdown --with-policy   the whole PR comment
  mlops show plans/release.json --format json | jq '.summary'

Text and markdown end with the approvals of the plan's exact content (PLANFILE.approvals.json,
written by `mlops approve`); --with-policy adds the policy check (policies/, or --policy).
"""


@click.command(epilog=EPILOG, short_help="Render a saved plan file.")
@click.argument("planfile", type=click.Path(dir_okay=False, path_type=Path))
@common.format_option(
    "text (Terraform-like), json (docs/plan-json.md) or markdown (a PR comment).",
    base.FORMATS,
)
@click.option("--with-policy", is_flag=True, help="Add the policy check's result.")
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(),
    default=None,
    help="Policy directory or file for --with-policy (default: policies/, else built-in).",
)
@click.pass_context
def command(
    ctx: click.Context, planfile: Path, fmt: str, with_policy: bool, policy_path: str | None
) -> None:
    """Render PLANFILE (written by `mlops plan -o`) exactly as `mlops plan` printed it, then
    its approvals.

    With `mlops -C DIR`, PLANFILE is found as `apply` finds it (relative to DIR)."""
    shown = api.show_saved(
        planfile,
        workspace=cli.run_context(ctx).workspace,
        with_policy=with_policy or policy_path is not None,
        policy=policy_path,
    )
    review = None if fmt == "json" else shown.review
    view = base.view(fmt, color=base.use_color(), review=review)
    click.echo(view.render(shown.plan), nl=False)
