"""`mlops validate [PATH...]`: load and check spec files; never writes anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mlops import api, cli, errors
from mlops.commands import common

# Version of the --format json document; bump only with a compatible change.
JSON_FORMAT_VERSION = 1

EPILOG = """\b
Examples:
  mlops validate                      every spec under the workspace's specs/
  mlops validate specs/a.yaml specs/b.yaml
  mlops validate --format json specs/ | jq .problems
  mlops validate --check-files specs/ also require artifacts and data to exist

Problems are printed as FILE:LINE:COLUMN: FIELD: MESSAGE on stderr. Exit code 0 when every
spec is valid, 1 otherwise.
"""


@click.command(epilog=EPILOG, short_help="Load and check spec files.")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@common.format_option("text: problems on stderr; json: one document on stdout.")
@click.option(
    "--check-files",
    is_flag=True,
    help="Also require artifact and validation data files to exist.",
)
@click.pass_context
def command(ctx: click.Context, paths: tuple[Path, ...], fmt: str, check_files: bool) -> None:
    """Load and check spec files (default: the workspace's specs/ directory).

    Every problem in every file is reported, with its file, line, column and field.
    """
    run = cli.run_context(ctx)
    check = api.validate(paths, workspace=run.workspace, check_files=check_files)
    problems = check.problems
    for warning in check.warnings:
        click.echo(f"Warning: {warning}", err=True)
    if fmt == "json":
        document = {**_document(check), "warnings": check.warnings}
        common.echo_json(document, sort_keys=True)
    else:
        _text(check)
    if problems:
        # Raised (not ctx.exit) so the CLI root maps it to exit 1 and prints the summary line.
        files = len({p.file for p in problems})
        noun = "problem" if len(problems) == 1 else "problems"
        every: list[object] = [*problems]
        raise errors.SpecError(f"{len(problems)} {noun} in {files} file(s)", every)


def _text(check: api.SpecCheck) -> None:
    loaded, problems = check.loaded, check.problems
    for problem in problems:
        click.echo(str(problem), err=True)
    if problems:
        return
    for item in loaded:
        model = item.deployment.spec.model
        click.echo(f"ok  {item.name} {model.version}  ({item.path})")
    noun = "deployment" if len(loaded) == 1 else "deployments"
    click.echo(f"{len(loaded)} {noun} valid.")


def _document(check: api.SpecCheck) -> dict[str, Any]:
    root, loaded, problems = check.root, check.loaded, check.problems
    return {
        "format_version": JSON_FORMAT_VERSION,
        "valid": not problems,
        "workspace": str(root),
        "deployments": [
            {
                "name": item.name,
                "version": item.deployment.spec.model.version,
                "file": str(item.path),
                "artifact": str(item.artifact_path or item.deployment.spec.model.artifact),
                "strategy": item.deployment.spec.rollout.strategy.value,
            }
            for item in ([] if problems else loaded)
        ],
        "problems": [problem.to_json() for problem in problems],
        "spec_digest": check.spec_digest,
    }
