"""Reads without MLflow's client (mlflow_reader): the sqlite tables read directly and an MLflow
server's REST API answer exactly what MLflow's client answers, on both backends, and never
import mlflow; anything they do not know falls back to the client."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlops import errors
from mlops.providers.mlflow import reader as mlflow_reader
from mlops.providers.mlflow import session as mlflow_session
from mlops.providers.mlflow import sqlite_reader as mlflow_sqlite_reader
from mlops.providers.mlflow import tags
from mlops.providers.mlflow.registry import MlflowRegistry
from tests.registry import support

Name = Callable[[str], str]
MODEL = Path("models/model.onnx")
OTHER = Path("models/other.onnx")
VAL = Path("models/val.npz")


def _fail_at(registry: MlflowRegistry, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    real = registry.session.call

    def call(what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        if what == step:
            raise errors.RegistryError(f"injected failure at {step}")
        return real(what, method, *args, **kwargs)

    monkeypatch.setattr(registry.session, "call", call)


def populate(registry: MlflowRegistry, monkeypatch: pytest.MonkeyPatch, name: Name) -> list[str]:
    """Every kind of row a reader must get right: prerelease and build semvers, aliases,
    conformance and rejection tags, statistics, a deleted version (MLflow keeps its tags),
    a pending leftover of a crash, and a version mlops did not write."""
    a, b, foreign = name("fa"), name("fb"), name("foreign")
    registry.register(support.deployment(a, "1.0.0"), MODEL, VAL)
    registry.register(support.deployment(a, "1.1.0-rc.1+b.2"), OTHER, None)
    registry.register(support.deployment(a, "1.1.0"), OTHER, None)
    registry.set_alias(a, "stable", "1.0.0")
    registry.set_alias(a, "canary", "1.1.0")
    registry.record_conformance(a, "1.0.0", {"passed": True, "accuracy": 0.95})
    registry.mark_rejected(a, "1.1.0-rc.1+b.2", "error_rate 0.02 > 0.001")
    registry.register(support.deployment(b, "2.0.0"), MODEL, None)
    gone = registry.register(support.deployment(b, "2.1.0"), OTHER, None)
    registry.set_alias(b, "canary", "2.1.0")
    registry.session.call("delete", "delete_model_version", b, gone.registry_version)
    with monkeypatch.context() as patch:
        _fail_at(registry, patch, "mark ready")
        patch.setattr(registry, "_discard", lambda *args: None)
        with pytest.raises(errors.RegistryError):
            registry.register(support.deployment(b, "2.2.0"), MODEL, None)
    source = next(iter(registry.session.all_versions([a])))
    registry.session.ensure_model(foreign)
    registry.session.call(
        "create version",
        "create_model_version",
        foreign,
        source.source,
        run_id=source.run_id,
        tags={"team": "other"},
    )
    registry.session.call("alias", "set_registered_model_alias", foreign, "prod", "1")
    return [a, b, foreign]


def test_fast_reads_equal_mlflow_client_reads(
    make_registry: Callable[[], MlflowRegistry],
    monkeypatch: pytest.MonkeyPatch,
    name: Name,
) -> None:
    ours = populate(make_registry(), monkeypatch, name)
    a, b, foreign = ours
    fast = make_registry()
    assert fast._fast(lambda reader: True) == (True,)  # a fast reader serves this backend
    with monkeypatch.context() as patch:
        patch.setenv(mlflow_reader.READER_ENV, "mlflow")
        client = make_registry()
        expected = {n: m for n, m in client.refresh().items() if n in ours}
        expected_some = client.refresh([b, foreign, name("absent")])
        semvers = ["1.0.0", "1.1.0-rc.1+b.2", "1.1.0", "2.0.0", "2.1.0", "2.2.0", "9.9.9"]
        expected_versions = {
            (m, v): client.get_version(m, v)
            for m in (a, b, foreign, name("absent"))
            for v in semvers
        }
        expected_stats = client.training_stats(a, "1.0.0")
    assert client.session._client is not None

    assert {n: m for n, m in fast.refresh().items() if n in ours} == expected
    assert fast.refresh([b, foreign, name("absent")]) == expected_some
    for (model, semver), version in expected_versions.items():
        assert fast.get_version(model, semver) == version
    assert fast.training_stats(a, "1.0.0") == expected_stats
    assert fast.session._client is None  # MLflow's client was never started
    # What the rows hold: only ready versions, aliases by semver, the deleted one gone.
    assert list(expected[a].versions) == ["1.0.0", "1.1.0-rc.1+b.2", "1.1.0"]
    assert expected[a].aliases == {"canary": "1.1.0", "stable": "1.0.0"}
    assert list(expected[b].versions) == ["2.0.0"] and expected[b].aliases == {}
    assert foreign not in expected and expected_stats


def test_reads_do_not_import_mlflow(
    make_registry: Callable[[], MlflowRegistry], ws: Path, name: Name
) -> None:
    """What `status`, `plan` and `registry list` pay for: no `import mlflow`, no SQLAlchemy."""
    model = name("noimport")
    registry = make_registry()
    registry.register(support.deployment(model, "1.0.0"), MODEL, None)
    registry.set_alias(model, "stable", "1.0.0")
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from mlops.providers.mlflow.registry import MlflowRegistry\n"
        f"r = MlflowRegistry({registry.tracking_uri!r}, Path({str(registry.artifact_root)!r}),"
        f" workspace=Path({str(ws)!r}))\n"
        f"found = r.refresh([{model!r}])[{model!r}]\n"
        f"assert found.stable == '1.0.0', found\n"
        f"assert r.get_version({model!r}, '1.0.0') is not None\n"
        "print(sorted(m for m in ('mlflow', 'sqlalchemy', 'alembic') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_chunked_name_filters_find_every_name(
    make_registry: Callable[[], MlflowRegistry], monkeypatch: pytest.MonkeyPatch, name: Name
) -> None:
    models = [name(f"chunk{i}") for i in range(3)]
    registry = make_registry()
    for model in models:
        registry.register(support.deployment(model, "1.0.0"), MODEL, None)
    monkeypatch.setattr(mlflow_sqlite_reader, "NAMES_PER_QUERY", 1)
    monkeypatch.setattr(mlflow_session, "NAMES_PER_FILTER", 1)
    reader = mlflow_reader.for_uri(registry.tracking_uri, registry.session.sqlite_file, timeout=10)
    assert reader is not None
    found = reader.read(models)
    assert sorted({row.name for row in found.versions}) == models
    assert all(tags.decode(row) is not None for row in found.versions)


# -- sqlite only -------------------------------------------------------------------------------


@pytest.fixture
def sqlite_registry(ws: Path, sqlite_template: Path) -> MlflowRegistry:
    db = ws / ".mlops" / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(sqlite_template.read_bytes())
    return MlflowRegistry(f"sqlite:///{db}", ws / ".mlops" / "artifacts", workspace=ws)


def _revision(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]


def test_the_installed_mlflow_schema_is_supported(sqlite_template: Path) -> None:
    """An MLflow upgrade that changes the schema revision fails here: check the reader's queries
    against the new tables, then add the revision (until then every read falls back)."""
    (revision,) = _revision(sqlite_template)
    assert revision in mlflow_sqlite_reader.SUPPORTED_REVISIONS


def test_an_unknown_schema_revision_falls_back_to_mlflow(
    sqlite_registry: MlflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite_registry.register(support.deployment("fallback", "1.0.0"), MODEL, None)
    expected = sqlite_registry.refresh()
    monkeypatch.setattr(mlflow_sqlite_reader, "SUPPORTED_REVISIONS", frozenset({"0123456789ab"}))
    fresh = MlflowRegistry(
        sqlite_registry.tracking_uri,
        sqlite_registry.artifact_root,
        workspace=sqlite_registry.workspace,
    )
    assert fresh.refresh() == expected and list(expected) == ["fallback"]
    assert fresh.session._client is not None  # read through MLflow's client
    assert fresh._reader is None  # and remembered for this registry


def test_reads_change_nothing(sqlite_registry: MlflowRegistry) -> None:
    sqlite_registry.register(support.deployment("readonly", "1.0.0"), MODEL, None)
    db = sqlite_registry.session.sqlite_file
    assert db is not None
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    fresh = MlflowRegistry(
        sqlite_registry.tracking_uri,
        sqlite_registry.artifact_root,
        workspace=sqlite_registry.workspace,
    )
    assert list(fresh.refresh()) == ["readonly"] and fresh.get_version("readonly", "1.0.0")
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in db.parent.iterdir() if p.name.startswith("mlflow.db")) == [
        "mlflow.db"
    ]  # no journal or WAL file left behind


def test_a_registry_locked_by_a_writer_is_a_transient_error(
    sqlite_registry: MlflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite_registry.register(support.deployment("locked", "1.0.0"), MODEL, None)
    db = sqlite_registry.session.sqlite_file
    assert db is not None
    monkeypatch.setattr(mlflow_sqlite_reader, "BUSY_TIMEOUT", 0.2)
    writer = sqlite3.connect(db, isolation_level=None)
    try:
        writer.execute("BEGIN EXCLUSIVE")
        with pytest.raises(errors.TransientError, match="is busy"):
            sqlite_registry.refresh()
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert list(sqlite_registry.refresh()) == ["locked"]


def test_a_file_that_is_not_a_database_is_a_registry_error(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"not a database" * 100)
    registry = MlflowRegistry(f"sqlite:///{db}", tmp_path / "artifacts")
    with pytest.raises(errors.RegistryError, match="not a database"):
        registry.refresh()


def test_the_reader_can_be_forced_off_and_is_checked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    db = tmp_path / "mlflow.db"
    monkeypatch.setenv(mlflow_reader.READER_ENV, "mlflow")
    assert mlflow_reader.for_uri(f"sqlite:///{db}", db, timeout=10) is None
    monkeypatch.setenv(mlflow_reader.READER_ENV, "fast")
    with pytest.raises(errors.ConfigError, match="MLOPS_REGISTRY_READER"):
        mlflow_reader.for_uri(f"sqlite:///{db}", db, timeout=10)
    monkeypatch.setenv(mlflow_reader.READER_ENV, "auto")
    monkeypatch.setenv("MLFLOW_ENABLE_WORKSPACES", "true")
    assert mlflow_reader.for_uri("http://127.0.0.1:5000", None, timeout=10) is None
