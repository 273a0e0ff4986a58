"""Registry reads without importing MLflow, for the everyday commands (status, plan, registry).

`import mlflow` and its SQLAlchemy store cost seconds before the first query; a read needs
neither. For a sqlite registry the model-registry tables are read directly (read-only, the
schema revision checked against the one this reader knows); for an MLflow server its REST
search endpoints are called. Anything these readers do not know (another schema revision,
MLflow workspaces, an auth plugin) raises `Unsupported`, and the caller reads through MLflow's
client instead. Writes always go through MLflow's client.

`MLOPS_REGISTRY_READER=mlflow` forces MLflow's client for reads too (a comparison baseline, or
a way around a reader bug); the default is `auto`.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from mlops import errors

READER_ENV = "MLOPS_REGISTRY_READER"
DEFAULT_WORKSPACE = "default"  # MLflow's single-tenant workspace: every row lives in it
# Authentication MLflow's client may use that these readers do not reproduce.
_FOREIGN_AUTH = ("MLFLOW_TRACKING_AUTH", "MLFLOW_TRACKING_AWS_SIGV4")


class Unsupported(Exception):
    """This reader cannot answer for this registry: read through MLflow's client."""


@dataclass(frozen=True)
class VersionRow:
    """The fields of an MLflow model version that mlops reads; `mlflow_tags.decode` takes it
    as it takes MLflow's own entity."""

    name: str
    version: str
    source: str
    creation_timestamp: int | None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """Every live (not deleted) version, and alias -> version number per model."""

    versions: list[VersionRow]
    aliases: dict[str, dict[str, str]]


class Reader(Protocol):
    def read(self, names: Sequence[str] | None) -> Snapshot:
        """Versions and aliases of every model, or of `names` (validated model names)."""
        ...

    def by_alias(self, name: str, alias: str) -> VersionRow | None:
        """The version `alias` points at; None when the model or the alias does not exist."""
        ...


def for_uri(uri: str, sqlite_file: Path | None, *, timeout: float) -> Reader | None:
    """The fast reader for a registry URI, or None when only MLflow's client can read it."""
    mode = os.environ.get(READER_ENV, "auto").strip().lower() or "auto"
    if mode not in ("auto", "mlflow"):
        raise errors.ConfigError(f"{READER_ENV}={mode!r}: use auto or mlflow")
    if mode == "mlflow" or _workspaces_enabled():
        return None
    if sqlite_file is not None:
        from mlops.providers.mlflow import sqlite_reader as mlflow_sqlite_reader

        return mlflow_sqlite_reader.SqliteReader(uri, sqlite_file)
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme in ("http", "https") and not any(os.environ.get(v) for v in _FOREIGN_AUTH):
        from mlops.providers.mlflow import rest_reader as mlflow_rest_reader

        return mlflow_rest_reader.RestReader(uri, timeout=timeout)
    return None


def _workspaces_enabled() -> bool:
    """MLflow workspaces scope every row by a workspace the client resolves; these readers
    know only the default one."""
    enabled = os.environ.get("MLFLOW_ENABLE_WORKSPACES", "").strip().lower()
    workspace = os.environ.get("MLFLOW_WORKSPACE", "").strip()
    return enabled in ("1", "true", "yes") or workspace not in ("", DEFAULT_WORKSPACE)
