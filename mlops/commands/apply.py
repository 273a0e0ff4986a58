"""`mlops apply [PLANFILE | PATH...]`: execute a plan, journaled, gated, rolled back on failure."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mlops import api, cli, core, errors

EPILOG = """\b
Examples:
  mlops plan specs/ -o plans/release.json && mlops apply plans/release.json
  mlops apply specs/                   plan, show it, ask, then apply
  mlops apply --auto-approve specs/    no question (CI)
  mlops apply --lock-timeout 2m plans/release.json

\b
Exit codes: 0 applied, 1 error (stale plan, lock held, bad input), 3 rolled back
automatically (a gate or the conformance test failed), 4 paused on an inconclusive gate
(`mlops promote NAME` resumes, `mlops rollback NAME` undoes). Re-running the same plan
after an interruption resumes it from the journal in .mlops/journal/.
"""


def lock_timeout_option(function: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--lock-timeout",
        default="0s",
        show_default=True,
        help="How long to wait for the workspace lock (e.g. 30s, 2m).",
    )(function)


def parse_lock_timeout(text: str) -> float:
    try:
        return core.parse_duration(text)
    except ValueError as exc:
        raise errors.UsageError(f"--lock-timeout: {exc}") from None


@click.command(epilog=EPILOG, short_help="Execute a plan: register, test, canary, promote.")
@click.argument("targets", nargs=-1, type=click.Path(path_type=Path))
@click.option("--auto-approve", is_flag=True, help="Apply a plan made from PATHs without asking.")
@lock_timeout_option
@click.pass_context
def command(
    ctx: click.Context, targets: tuple[Path, ...], auto_approve: bool, lock_timeout: str
) -> None:
    """Execute a saved PLANFILE, or plan PATHs (spec files or directories) and apply that.

    Apply does only what the plan says, refuses a plan whose live state has changed ("plan
    is stale"), holds at every gated checkpoint and rolls back when a gate fails.
    """
    run = cli.run_context(ctx)
    timeout = parse_lock_timeout(lock_timeout)
    plan_file = targets[0] if len(targets) == 1 and targets[0].suffix == ".json" else None
    result = api.apply(
        plan_file,
        () if plan_file else targets,
        workspace=run.workspace,
        confirm=None if auto_approve else _confirm,
        lock_timeout=timeout,
        listeners=[api.progress_view(sys.stderr)],
    )
    finish(result)


def finish(result: api.ApplyResult) -> None:
    """Print the outcome; exit 3 for a rollback, 4 for a pause (shared by promote)."""
    if not result.run_id:
        click.echo("No changes. Live state matches the specs.")
        return
    for model, outcome in sorted(result.models.items()):
        reason = result.reasons.get(model)
        click.echo(f"{model}: {outcome.value}" + (f": {reason}" if reason else ""))
    failure = api.outcome_error(result)
    if failure is not None:
        raise failure
    click.echo(f"Apply complete (run {result.run_id}).")


def _confirm(plan: api.Plan) -> bool:
    from mlops.render import base

    view = base.view("text", color=base.use_color(sys.stdout))
    click.echo(view.render(plan), nl=False)
    if not sys.stdin.isatty():
        raise errors.UsageError(
            "stdin is not a terminal: review the plan and re-run with --auto-approve"
        )
    return click.confirm("Apply this plan?", default=False)
