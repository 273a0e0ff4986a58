"""`mlops drift NAME --data FILE | --live`: feature drift against the version's training
baseline, of a data file or of the inputs the engine sampled from live traffic."""

from __future__ import annotations

import sys

import click

from mlops import api, cli, errors
from mlops.commands import common

EXIT_DRIFT = 2

EPILOG = """\b
Examples:
  mlops drift fraud-scorer --data data/live-2026-11-27.npz
  mlops drift fraud-scorer --data data/live.parquet --report reports/drift.html
  mlops drift fraud-scorer --data data/live.csv --version 2.3.1 --format json
  mlops drift fraud-scorer --data data/live.npz --run-hook      (cron: retrain on drift)
  mlops drift fraud-scorer --live --report reports/live.html    (what the engine sampled)
  mlops drift fraud-scorer --live --save-samples data/sampled.npz

Data: .npz with one array per signature input, or .csv/.parquet with one column per
feature (a label column is ignored). --live instead reads the inputs the local engine sampled
from recent requests (every worker's, merged; docs/monitoring.md). Either is compared with
the statistics of the version's validation data, recorded at registration. A feature drifts
when its mean moves more than spec.monitoring.drift.threshold_sigma (default 2) training
standard deviations.
The spec's on_drift command runs only with --run-hook, in the workspace directory, without a
shell; it gets MLOPS_DRIFT_MODEL, _VERSION, _FEATURES and _REPORT in its environment (an
on_drift webhook gets a JSON POST instead). `mlops watch` runs it once per drift episode.
Exit codes: 0 no drift, 2 drift, 1 error (bad input, or the on_drift command failed).
"""


@click.command(epilog=EPILOG, short_help="Feature drift of data against the training baseline.")
@click.argument("name")
@click.option("--data", "data", default=None, type=click.Path(dir_okay=False), help="Live data.")
@click.option("--live", is_flag=True, help="Use the inputs the engine sampled from live traffic.")
@click.option(
    "--min-rows",
    type=click.IntRange(1, 1 << 20),
    default=100,
    show_default=True,
    help="With --live: fewer sampled rows than this give no verdict (an error).",
)
@click.option(
    "--save-samples",
    default=None,
    type=click.Path(dir_okay=False),
    help="With --live: also write the merged samples to this .npz (inside the workspace).",
)
@click.option(
    "--version", "version", default=None, help="Version to compare with (default: stable)."
)
@click.option(
    "--report",
    "report_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write a self-contained HTML report with plots here (inside the workspace).",
)
@common.format_option("Output on stdout.")
@click.option(
    "--run-hook", is_flag=True, help="Run the spec's on_drift command when drift is found."
)
@click.option(
    "--hook-timeout",
    type=click.FloatRange(min=1),
    default=api.DRIFT_HOOK_TIMEOUT,
    show_default=True,
    help="Seconds before the on_drift command is killed.",
)
@click.pass_context
def command(
    ctx: click.Context,
    name: str,
    data: str | None,
    live: bool,
    min_rows: int,
    save_samples: str | None,
    version: str | None,
    report_path: str | None,
    fmt: str,
    run_hook: bool,
    hook_timeout: float,
) -> None:
    """Feature drift of FILE (or of live samples) against NAME's training baseline."""
    run = cli.run_context(ctx)
    if (data is None) == (not live):
        raise errors.UsageError("give exactly one of --data FILE or --live")
    if save_samples is not None and not live:
        raise errors.UsageError("--save-samples needs --live")
    progress = _progress if sys.stderr.isatty() else None
    if data is None:
        outcome = api.drift_live(
            name,
            version=version,
            report=report_path,
            run_hook=run_hook,
            hook_timeout=hook_timeout,
            min_rows=min_rows,
            save_samples=save_samples,
            workspace=run.workspace,
            progress=progress,
        )
    else:
        outcome = api.drift(
            name,
            data,
            version=version,
            report=report_path,
            run_hook=run_hook,
            hook_timeout=hook_timeout,
            workspace=run.workspace,
            progress=progress,
        )
    if fmt == "json":
        common.echo_json(api.drift_json(outcome))
    else:
        click.echo(api.drift_text(outcome))
    declared = outcome.hook_command or outcome.hook_webhook
    if run_hook and declared is None and outcome.result.has_drift:
        click.echo(
            f"note: --run-hook given, but {name}'s spec declares no on_drift command", err=True
        )
    if outcome.hook is not None and not outcome.hook.ok:
        raise errors.MlopsError(f"on_drift `{outcome.hook.command}` {outcome.hook.error}")
    if outcome.result.has_drift:
        # SystemExit, not ctx.exit: the CLI root runs click with standalone_mode=False, where
        # click turns ctx.exit(2) into a return value that would end as exit code 0.
        raise SystemExit(EXIT_DRIFT)


def _progress(done: int, total: int) -> None:
    click.echo(f"\rplotting features {done}/{total}", nl=done == total, err=True)
