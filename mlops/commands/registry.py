"""`mlops registry list|show`: what the model registry holds, with mlops metadata."""

from __future__ import annotations

from typing import Any

import click

from mlops import api, cli, errors
from mlops.commands import common

# Version of the --format json documents; bump only with a compatible change.
JSON_FORMAT_VERSION = 1

FORMAT = common.format_option("text: tables; json: one stable document on stdout.")


@click.group(
    short_help="Registry contents with metadata.",
    epilog=(
        "\b\nExamples:\n  mlops registry list\n"
        "  mlops registry show fraud-scorer@2.3.1 --format json"
    ),
)
def command() -> None:
    """Models and versions in the model registry (MLflow), with mlops metadata."""


@command.command(
    "list",
    epilog="\b\nExample:\n  mlops registry list --format json | jq '.models[].name'",
)
@FORMAT
@click.pass_context
def list_(ctx: click.Context, fmt: str) -> None:
    """Every model with its versions, status and stable/canary aliases."""
    models = api.registry_list(cli.run_context(ctx).workspace)
    if fmt == "json":
        doc = {
            "format_version": JSON_FORMAT_VERSION,
            "models": [_model(m) for m in models.values()],
        }
        common.echo_json(doc, sort_keys=True)
        return
    if not models:
        click.echo("The registry holds no models.")
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in ("MODEL", "VERSION", "#", "STATUS", "ALIASES", "SHA256", "CREATED"):
        table.add_column(column, no_wrap=True)
    for model in models.values():
        for version in model.versions.values():
            table.add_row(
                model.name,
                version.semver,
                version.registry_version,
                version.status.value,
                ",".join(_aliases_of(model, version.semver)) or "-",
                version.sha256[:12],
                (version.created_at or "-")[:19],
            )
    _console().print(table)


@command.command(
    "show",
    epilog=(
        "\b\nExamples:\n  mlops registry show fraud-scorer\n"
        "  mlops registry show fraud-scorer@2.3.1 --format json"
    ),
)
@click.argument("ref", metavar="NAME[@VERSION]")
@FORMAT
@click.pass_context
def show(ctx: click.Context, ref: str, fmt: str) -> None:
    """One model (or one version): checksum, signature, baseline, status, conformance, and
    the digest of the version's pushed image (docs/images.md)."""
    name, _, version = ref.partition("@")
    if "@" in ref and not version:
        raise errors.UsageError(f"{ref!r}: give NAME or NAME@VERSION")
    model = api.registry_show(name, version or None, cli.run_context(ctx).workspace)
    if fmt == "json":
        doc = {"format_version": JSON_FORMAT_VERSION, "model": _model(model)}
        common.echo_json(doc, sort_keys=True)
        return
    _show_text(model)


def _aliases_of(model: api.RegistryModel, semver: str) -> list[str]:
    return sorted(alias for alias, target in model.aliases.items() if target == semver)


def _model(model: api.RegistryModel) -> dict[str, Any]:
    versions = []
    for version in model.versions.values():
        item = version.model_dump(mode="json")
        item["aliases"] = _aliases_of(model, version.semver)
        versions.append(item)
    return {"name": model.name, "aliases": dict(model.aliases), "versions": versions}


# Output that is not a terminal (a pipe, a file, CI logs) gets the whole table: rich would
# otherwise assume 80 columns and cut or drop columns. Tables use only the width they need.
PIPE_WIDTH = 1000


def _console() -> Any:
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console = Console(highlight=False, soft_wrap=True, width=PIPE_WIDTH)
    return console


def _show_text(model: api.RegistryModel) -> None:
    from rich.table import Table

    console = _console()
    aliases = ", ".join(f"{a}={v}" for a, v in model.aliases.items()) or "none"
    console.print(f"[bold]{model.name}[/bold]  aliases: {aliases}")
    for version in model.versions.values():
        console.print()
        tagged = ", ".join(_aliases_of(model, version.semver))
        console.print(
            f"[bold]{version.semver}[/bold] (registry version {version.registry_version})"
            + (f"  [{tagged}]" if tagged else ""),
            markup=True,
        )
        rows = [
            ("status", version.status.value),
            ("rejected", version.rejected_reason or "-"),
            ("sha256", version.sha256),
            ("artifact", version.artifact_uri),
            ("created", version.created_at or "-"),
            (
                "baseline",
                f"{version.baseline.metric} {version.baseline.value}, "
                f"p99 {version.baseline.p99_ms} ms",
            ),
            ("conformance", _conformance(version.conformance)),
            ("image digest", version.image_digest or "-"),
            ("image", version.image_reference or "-"),
        ]
        details = Table.grid(padding=(0, 2))
        details.add_column(no_wrap=True)
        details.add_column(overflow="fold")  # long URIs and checksums wrap, never get cut
        for key, value in rows:
            details.add_row(f"  {key}", value)
        console.print(details)
        tensors = Table(box=None, header_style="bold", padding=(0, 2))
        for column in ("  TENSOR", "KIND", "DTYPE", "SHAPE"):
            tensors.add_column(column, no_wrap=True)
        for kind, specs in (
            ("input", version.signature.inputs),
            ("output", version.signature.outputs),
        ):
            for tensor in specs:
                shape = "[" + ", ".join(str(d) for d in tensor.shape) + "]"
                tensors.add_row(f"  {tensor.name}", kind, tensor.dtype.value, shape)
        console.print(tensors)


def _conformance(result: dict[str, Any] | None) -> str:
    if not result:
        return "not tested"
    return ", ".join(f"{k}={v}" for k, v in sorted(result.items()))
