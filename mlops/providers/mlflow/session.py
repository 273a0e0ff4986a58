"""A thin, error-translating session over `mlflow.MlflowClient`.

Every MLflow failure becomes an mlops error here: an unreachable server a fast
TransientError, anything else a RegistryError, and "does not exist" a None where asked.
Reads are paged searches covering every model at once, never one call per model.
"""

from __future__ import annotations

import logging
import os
import shutil
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlops import errors

EXPERIMENT = "mlops-registry"
VERSIONS_PAGE = 10_000
MODELS_PAGE = 1_000  # MLflow's maximum for search_registered_models
NAMES_PER_FILTER = 200  # keeps `name IN (...)` filter strings a sane length
# Most specific first: the first one found is what the error message says.
_UNREACHABLE = (
    "Connection refused",
    "timed out",
    "Name or service not known",
    "Connection aborted",
    "Failed to establish",
    "Max retries exceeded",
)


class Session:
    def __init__(self, uri: str, artifact_root: Path) -> None:
        self.uri = uri
        scheme = urllib.parse.urlparse(uri).scheme
        self.remote = scheme in ("http", "https")
        # A database URI means this process writes artifacts itself: keep them in the
        # workspace. A server decides its own artifact store (usually proxied over HTTP);
        # then `artifact_root` only caches downloads.
        self.local_artifact_root: Path | None = None if self.remote else artifact_root
        self.download_root = artifact_root / "downloads"
        self.artifact_root = artifact_root
        if self.remote:
            # MLflow retries a dead server for minutes by default; a CLI should say so fast.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
        self.timeout = _seconds(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT"), 10.0)
        # MLflow prints run URLs on stdout, which would corrupt `--format json` output.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        # A deployment controller should not phone home from the machines it runs on.
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        # A local sqlite registry that does not exist yet is empty: reads say so without
        # creating it (plan changes nothing); the first write creates it.
        self.sqlite_file = _sqlite_file(uri)
        self._client: Any = None
        self._experiment_id: str | None = None
        self._known_models: set[str] = set()

    @property
    def client(self) -> Any:
        if self._client is None:
            if self.sqlite_file is not None:
                self.sqlite_file.parent.mkdir(parents=True, exist_ok=True)
            from mlflow import MlflowClient  # heavy: only when the registry is used

            # After the import: mlflow sets up its own loggers and would print table migrations.
            for noisy in ("mlflow", "alembic"):
                logging.getLogger(noisy).setLevel(logging.WARNING)
            # It logs a database error with its traceback before re-raising it (e.g. "database
            # is locked"); the error is translated below and reported once, in one line.
            logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)

            self._client = self._translate("connect", MlflowClient, self.uri, self.uri)
        return self._client

    # -- calls with error translation --------------------------------------------------

    def _translate(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except errors.MlopsError:
            raise
        except Exception as exc:
            text = str(getattr(exc, "message", exc))
            if self.remote and (
                any(marker in text for marker in _UNREACHABLE) or "ConnectionError" in repr(exc)
            ):
                # MLflow's message is a long urllib3 chain; the gist fits in a few words.
                reason = next(
                    (m.lower() for m in _UNREACHABLE if m in text), text.splitlines()[0][:200]
                )
                raise errors.TransientError(
                    f"registry {self.uri} is unreachable ({what}: {reason})"
                ) from None
            first = text.splitlines()[0][:300] if text else repr(exc)
            raise errors.RegistryError(f"registry {self.uri}: {what} failed: {first}") from exc

    def call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._translate(what, getattr(self.client, method), *args, **kwargs)

    def call_missing_ok(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(*args, **kwargs)
        except Exception as exc:
            if _is_missing(exc):
                return None
            return self._translate(what, _reraise, exc)

    # -- reads ---------------------------------------------------------------------------

    def absent(self) -> bool:
        """A local sqlite registry whose file does not exist: nothing registered, and neither
        MLflow nor the file needs to be touched to know it."""
        return (
            self._client is None and self.sqlite_file is not None and not self.sqlite_file.exists()
        )

    def by_alias(self, name: str, alias: str) -> Any:
        if self.absent():
            return None
        return self.call_missing_ok("get by alias", "get_model_version_by_alias", name, alias)

    def all_versions(self, names: list[str] | None) -> Iterator[Any]:
        """Every model version (of `names`, if given), in pages, ordered for stable paging."""
        for filter_string in name_filters(names):
            yield from self._pages(
                "search versions",
                "search_model_versions",
                VERSIONS_PAGE,
                filter_string=filter_string,
                order_by=["name ASC", "version_number ASC"],
            )

    def versions_with_semver(self, name: str, semver: str) -> list[Any]:
        # Both values were validated (DNS-1123 name, parsed semver): no quote can get in.
        query = f"name = '{name}' and tags.`mlops.semver` = '{semver}'"
        return list(
            self._pages("search versions", "search_model_versions", 100, filter_string=query)
        )

    def all_aliases(self, names: list[str] | None = None) -> dict[str, dict[str, str]]:
        """alias -> MLflow version number, for every registered model (of `names`, if given:
        the registry may hold many models this workspace does not manage), in pages."""
        return {
            model.name: {a: str(v) for a, v in (getattr(model, "aliases", None) or {}).items()}
            for filter_string in name_filters(names)
            for model in self._pages(
                "search models",
                "search_registered_models",
                MODELS_PAGE,
                filter_string=filter_string,
            )
        }

    def _pages(self, what: str, method: str, size: int, **kwargs: Any) -> Iterator[Any]:
        if self.absent():
            return
        token: str | None = None
        for _ in range(1_000_000):  # bounded: a broken server must not loop us forever
            page = self.call(what, method, max_results=size, page_token=token, **kwargs)
            yield from page
            token = page.token
            if not token:
                return

    # -- writes ----------------------------------------------------------------------------

    def ensure_model(self, name: str) -> None:
        if name in self._known_models:
            return
        try:
            self.client.create_registered_model(name, tags={"mlops.managed": "true"})
        except Exception as exc:
            if getattr(exc, "error_code", None) != "RESOURCE_ALREADY_EXISTS":
                self._translate("create model", _reraise, exc)
        # Remembered for this process only: saves a write per version when registering many.
        self._known_models.add(name)

    def experiment_id(self) -> str:
        if self._experiment_id is None:
            found = self.call("get experiment", "get_experiment_by_name", EXPERIMENT)
            if found is not None:
                self._experiment_id = str(found.experiment_id)
            else:
                location = None
                if self.local_artifact_root is not None:
                    self.local_artifact_root.mkdir(parents=True, exist_ok=True)
                    location = self.local_artifact_root.resolve().as_uri()
                self._experiment_id = str(
                    self.call("create experiment", "create_experiment", EXPERIMENT, location)
                )
        return self._experiment_id

    def upload(self, name: str, semver: str, staged: Path) -> tuple[str, str]:
        """A run holding `staged/*` under `model/`; returns (run id, source URI)."""
        run = self.call(
            "create run",
            "create_run",
            self.experiment_id(),
            tags={"mlops.model": name, "mlops.semver": semver},
            run_name=f"{name}@{semver}",
        )
        run_id = str(run.info.run_id)
        try:
            self.call("upload artifacts", "log_artifacts", run_id, str(staged), staged.name)
            self.call("finish run", "set_terminated", run_id)
        except BaseException:
            self.delete_run(run_id)
            raise
        return run_id, f"{run.info.artifact_uri.rstrip('/')}/{staged.name}"

    def delete_run(self, run_id: str) -> None:
        run = self.call_missing_ok("get run", "get_run", run_id)
        self.call_missing_ok("delete run", "delete_run", run_id)
        if run is not None and self.local_artifact_root is not None:
            local = _local(run.info.artifact_uri)
            if local is not None and self.local_artifact_root.resolve() in local.parents:
                shutil.rmtree(local.parent, ignore_errors=True)  # the run's directory

    def fetch(self, source: str, file_name: str, key: str, *, fresh: bool = False) -> Path:
        """A local path to `source/file_name`; remote stores download into a cache at `key`."""
        local = _local(source)
        if local is not None:
            path = local / file_name
            if not path.is_file():
                raise errors.RegistryError(f"stored artifact {path} ({key}) is missing")
            return path
        target = self.download_root / key
        cached = target / file_name
        if cached.is_file() and not fresh:
            return cached
        target.mkdir(parents=True, exist_ok=True)
        from mlflow import artifacts  # heavy: only for remote stores

        got = self._translate(
            "download artifact",
            artifacts.download_artifacts,
            artifact_uri=f"{source}/{file_name}",
            dst_path=str(target),
            tracking_uri=self.uri,
        )
        return Path(got)


def name_filters(names: list[str] | None) -> list[str | None]:
    """`name IN (...)` filters of at most NAMES_PER_FILTER names; [None] means no filter.
    Names are validated DNS-1123 labels by the callers: no quote can get in."""
    if names is None:
        return [None]
    return [
        "name IN (" + ", ".join(f"'{n}'" for n in names[i : i + NAMES_PER_FILTER]) + ")"
        for i in range(0, len(names), NAMES_PER_FILTER)
    ]


def _sqlite_file(uri: str) -> Path | None:
    """The database file of a `sqlite:///PATH` URI (SQLAlchemy's rule: `sqlite:///rel.db` is
    relative, `sqlite:////abs.db` absolute); None for other URIs and in-memory databases."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    path = urllib.parse.unquote(uri[len(prefix) :].split("?", 1)[0])
    return None if path in ("", ":memory:") else Path(path)


def _local(uri: str) -> Path | None:
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.path))
    if parsed.scheme == "":
        return Path(uri)
    return None


def _is_missing(exc: BaseException) -> bool:
    return is_missing_code(getattr(exc, "error_code", None), str(exc))


def is_missing_code(code: object, message: str) -> bool:
    """MLflow reports an unknown alias as an invalid parameter, an unknown model or version
    as a missing resource (the same codes from its client and its REST API)."""
    return code == "RESOURCE_DOES_NOT_EXIST" or (
        code == "INVALID_PARAMETER_VALUE" and "not found" in message
    )


def _reraise(exc: BaseException) -> Any:
    raise exc


def _seconds(text: str | None, default: float) -> float:
    try:
        value = float(text) if text else default
    except ValueError:
        return default
    return value if value > 0 else default
