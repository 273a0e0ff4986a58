"""`mlops plan [PATH...]`: refresh live state, diff against the specs, print (and save) the plan."""

from __future__ import annotations

from pathlib import Path

import click

from mlops import api, cli, errors
from mlops.commands import common
from mlops.render import base

EPILOG = """\b
Examples:
  mlops plan                               every spec under the workspace's specs/
  mlops plan specs/ -o plans/release.json  save the plan for review and `mlops apply`
  mlops plan --format markdown > comment.md
  mlops plan --detailed-exitcode; echo $?  0 no changes, 2 changes, 1 error
  mlops plan --allow-delete                also plan deleting models whose spec was removed
  mlops plan --accept-missing-accelerator  serve a GPU spec on this machine's CPU (warned)

plan never changes anything. Exit code 0 (1 on error); with --detailed-exitcode 0 means
no changes, 2 means changes.
"""


@click.command(epilog=EPILOG, short_help="Diff specs against live state and print the plan.")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Save the plan as JSON to this file (inside the workspace).",
)
@common.format_option(
    "text (Terraform-like), json (docs/plan-json.md) or markdown (a PR comment).",
    base.FORMATS,
)
@click.option(
    "--detailed-exitcode", is_flag=True, help="Exit 0 when there are no changes, 2 when there are."
)
@click.option(
    "--allow-delete",
    is_flag=True,
    help="Plan deleting models mlops manages whose spec was removed (otherwise only warned).",
)
@click.option(
    "--accept-missing-accelerator",
    is_flag=True,
    help="Local target: a spec's accelerator this machine lacks is a warning (served on the "
    "CPU), not an error.",
)
@click.pass_context
def command(
    ctx: click.Context,
    paths: tuple[Path, ...],
    out: Path | None,
    fmt: str,
    detailed_exitcode: bool,
    allow_delete: bool,
    accept_missing_accelerator: bool,
) -> None:
    """Diff the specs (default: the workspace's specs/) against the registry and runtime.

    Prints every action in order, with the traffic weights, gate thresholds, rollback and
    estimated duration of each rollout.
    """
    run = cli.run_context(ctx)
    plan = api.plan(
        run.workspace,
        list(paths),
        allow_delete=allow_delete,
        accept_missing_accelerator=accept_missing_accelerator,
    )
    if plan.errors:
        if fmt != "text":
            # Machine readers still get the document, with its `errors` list.
            click.echo(base.view(fmt).render(plan), nl=False)
        count = len(plan.errors)
        if count == 1:
            raise errors.PlanError(plan.errors[0])
        raise errors.PlanError(f"{count} plan errors:\n  " + "\n  ".join(plan.errors))
    saved = api.save_plan(plan, out, run.workspace) if out is not None else None
    click.echo(base.view(fmt, color=base.use_color()).render(plan), nl=False)
    if saved is not None:
        # On stderr so that stdout stays one clean document for --format json/markdown.
        click.echo(f"\nSaved the plan to: {out}\nTo apply it: mlops apply {out}", err=True)
    if detailed_exitcode and plan.has_changes:
        # Not ctx.exit(2): in non-standalone mode click returns that code and the CLI root
        # would exit 0.
        raise SystemExit(2)
