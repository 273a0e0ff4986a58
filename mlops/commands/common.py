"""Click pieces several commands share: the --format option and JSON output."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import click

TEXT_JSON = ("text", "json")


def format_option(
    help: str, choices: Sequence[str] = TEXT_JSON
) -> Callable[[click.decorators.FC], click.decorators.FC]:
    """`--format` stored as `fmt`, default text; each command keeps its own help text."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(list(choices)),
        default="text",
        show_default=True,
        help=help,
    )


def echo_json(document: object, *, indent: int | None = 2, sort_keys: bool = False) -> None:
    """One JSON document on stdout (commands differ in indent and key order: kept as is)."""
    click.echo(json.dumps(document, indent=indent, sort_keys=sort_keys))
