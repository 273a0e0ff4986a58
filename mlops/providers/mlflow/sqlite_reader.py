"""MLflow's model-registry tables in a sqlite file, read with the standard library.

Read-only (`mode=ro`: this process cannot change the file), in one transaction so versions,
tags and aliases come from one consistent snapshot. The tables are MLflow's, at the schema
revisions listed in SUPPORTED_REVISIONS (the `alembic_version` row MLflow's migrations keep);
any other revision is `Unsupported` and the caller reads through MLflow's client. The queries
keep MLflow's own read rules: rows of the default workspace, deleted versions
(`current_stage = 'Deleted_Internal'`) left out.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

from mlops import errors
from mlops.providers.mlflow.reader import DEFAULT_WORKSPACE, Snapshot, Unsupported, VersionRow

# MLflow 3.x heads whose registered_models / model_versions / model_version_tags /
# registered_model_aliases tables were checked against the queries below. A newer MLflow adds
# its head here after that check (tests/registry/test_fast_reader.py fails until it does).
SUPPORTED_REVISIONS = frozenset({"dc11669786a5"})
DELETED_STAGE = "Deleted_Internal"
NAMES_PER_QUERY = 500  # well under sqlite's bound-parameter limit
BUSY_TIMEOUT = 10.0  # seconds to wait for a writer's lock, as MLflow's own store does

_VERSIONS = (
    "SELECT name, version, creation_time, source FROM model_versions "
    "WHERE workspace = ? AND current_stage != ?"
)
_TAGS = "SELECT name, version, key, value FROM model_version_tags WHERE workspace = ?"
_ALIASES = "SELECT name, alias, version FROM registered_model_aliases WHERE workspace = ?"


class SqliteReader:
    def __init__(self, uri: str, path: Path) -> None:
        self.uri = uri
        self.path = path

    def read(self, names: Sequence[str] | None) -> Snapshot:
        if not self.path.exists():
            return Snapshot([], {})  # nothing registered yet; never created by a read
        rows: dict[tuple[str, int], VersionRow] = {}
        aliases: dict[str, dict[str, str]] = {}
        with self._snapshot() as conn:
            for where, params in _by_names(names):
                for name, number, created, source in conn.execute(
                    _VERSIONS + where, (DEFAULT_WORKSPACE, DELETED_STAGE, *params)
                ):
                    rows[(name, number)] = VersionRow(name, str(number), source or "", created)
                for name, number, key, value in conn.execute(
                    _TAGS + where, (DEFAULT_WORKSPACE, *params)
                ):
                    row = rows.get((name, number))
                    if row is not None:  # tags of deleted versions stay behind in MLflow
                        row.tags[key] = str(value)
                for name, alias, number in conn.execute(
                    _ALIASES + where, (DEFAULT_WORKSPACE, *params)
                ):
                    aliases.setdefault(name, {})[alias] = str(number)
        return Snapshot([rows[key] for key in sorted(rows)], aliases)

    def by_alias(self, name: str, alias: str) -> VersionRow | None:
        if not self.path.exists():
            return None
        with self._snapshot() as conn:
            found = conn.execute(
                "SELECT v.version, v.creation_time, v.source FROM registered_model_aliases a "
                "JOIN model_versions v ON v.workspace = a.workspace AND v.name = a.name "
                "AND v.version = a.version "
                "WHERE a.workspace = ? AND a.name = ? AND a.alias = ? AND v.current_stage != ?",
                (DEFAULT_WORKSPACE, name, alias, DELETED_STAGE),
            ).fetchone()
            if found is None:
                return None
            number, created, source = found
            row = VersionRow(name, str(number), source or "", created)
            for key, value in conn.execute(
                "SELECT key, value FROM model_version_tags "
                "WHERE workspace = ? AND name = ? AND version = ?",
                (DEFAULT_WORKSPACE, name, number),
            ):
                row.tags[key] = str(value)
        return row

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """One read transaction (a consistent snapshot of every table), sqlite errors
        translated: a writer holding the lock too long is transient, the rest is not."""
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro",
                uri=True,
                timeout=BUSY_TIMEOUT,
                isolation_level=None,
            )
            conn.execute("BEGIN")
            self._check_revision(conn)
            yield conn
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise errors.TransientError(
                    f"registry {self.uri} is busy (a writer held its lock {BUSY_TIMEOUT:.0f} s)"
                ) from None
            raise errors.RegistryError(f"registry {self.uri}: read failed: {exc}") from None
        except sqlite3.Error as exc:
            raise errors.RegistryError(f"registry {self.uri}: read failed: {exc}") from None
        finally:
            if conn is not None:
                conn.close()  # nothing was written: closing ends the read transaction

    def _check_revision(self, conn: sqlite3.Connection) -> None:
        try:
            found = [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            found = []  # not an MLflow database yet: MLflow's client decides what it is
        if len(found) != 1 or found[0] not in SUPPORTED_REVISIONS:
            raise Unsupported(f"{self.path}: schema revision {found} is not one this reader knows")


def _by_names(names: Sequence[str] | None) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(extra WHERE clause, its parameters): everything, or the names in bounded chunks."""
    if names is None:
        yield "", ()
        return
    for i in range(0, len(names), NAMES_PER_QUERY):
        chunk = tuple(names[i : i + NAMES_PER_QUERY])
        yield f" AND name IN ({', '.join('?' * len(chunk))})", chunk
