"""The local target's Runtime: the mlops engine, driven only through its admin API.

Every change goes to every worker's admin address, because each worker has its own
repository and routing table; a change counts as done only when every worker reads it back.

What a starting worker loads and how it routes comes from the desired state this module
keeps in `.mlops/engine/desired.json` (mlops/serving/desired.py reads it): a load or a table
is recorded once every worker confirmed it; an unload, and a rollback's table, are recorded
before any worker is touched, so no restart can bring back a version that was taken out.
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mlops import errors, fsio
from mlops.providers.engine import client as engine_client
from mlops.providers.engine import process as engine_process
from mlops.providers.engine import view as runtime_view
from mlops.state import models as state
from mlops.workspace import Workspace

Admin = engine_client.AdminClient
DESIRED_FILE = "desired.json"  # the name mlops/serving/desired.py reads in the state dir
DESIRED_FORMAT = 1


class LocalRuntime:
    def __init__(
        self, workspace: Workspace, *, admin_timeout: float = engine_client.ADMIN_TIMEOUT_S
    ) -> None:
        self.workspace = workspace
        # How long a worker may take to answer an admin call before it counts as silent.
        self.admin_timeout = admin_timeout
        self.process = engine_process.EngineProcess(workspace)
        # One keep-alive connection pool per worker: a rollback's weight change is a few calls.
        self._admins: dict[str, engine_client.AdminClient] = {}
        # Requests/s per model as of the last refresh (the engine's `mlops_request_rate`).
        self.request_rates: dict[str, float] = {}
        self._digests: dict[tuple[str, int, int, int], str] = {}  # staged file -> sha256
        # (worker, model) -> the last routing table read from that worker: what a worker that
        # stops answering is known to hold.
        self._last_read: dict[tuple[str, str], dict[str, Any]] = {}
        self._served: set[str] | None = None  # every model the workers served at the last refresh

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, replicas: int) -> None:
        self.ensure_running(replicas)

    def ensure_running(self, replicas: int) -> None:
        """Start the engine with `replicas` workers if it is not running. A running engine is
        left as it is, whatever its worker count: every model shares it, and changing the
        count is a step of its own in the plan (`scale_engine`, see `scale`)."""
        if self.process.record() is None:
            self.process.start(replicas)
        self._ensure_prometheus()

    def scale(self, replicas: int) -> None:
        """Give the shared engine `replicas` workers without losing a request: new workers
        start from the desired state (every version loaded, the routing tables) and join the
        port only then; surplus ones drain first. Started with that count if not running."""
        record = self.process.record()
        if record is None:
            self.process.start(replicas)
            self._ensure_prometheus()
            return
        if record.replicas == replicas and all(w is not None for w in record.workers()):
            return
        self._save_desired(self.desired())  # what the new workers start from
        before = record.replicas
        scaled = self.process.scale(replicas)
        for admin in self._admins.values():  # retired workers' addresses are gone for good
            admin.close()
        self._admins.clear()
        self._check_joined(scaled.admin_urls()[before:])
        self._ensure_prometheus()

    def _check_joined(self, urls: Sequence[str]) -> None:
        """Each new worker serves what the desired state says: versions READY, tables equal."""
        wanted = self.desired()
        for url in urls:
            admin = self._admin(url)
            ready = {(r["name"], r["version"]) for r in admin.index() if r["state"] == "READY"}
            tables = admin.routing().get("models") or {}
            for name, entry in wanted.items():
                missing = [v for v in entry.get("loaded", []) if (name, v) not in ready]
                table = tables.get(name) or {}
                same = _same_table(table, entry.get("weights") or {}, entry.get("shadow")) and (
                    int(table.get("generation", 0)) == int(entry.get("generation", 0))
                )
                if missing or (entry.get("weights") and not same):
                    raise errors.TransientError(
                        f"new worker {url} joined without {name}'s "
                        + (f"versions {', '.join(missing)}" if missing else "routing table")
                    )

    def engine(self) -> state.EngineState:
        """The shared engine: its worker count (0: not running) and the models it serves."""
        record = self.process.record()
        if record is None:
            return state.EngineState()
        # Read only (plan calls this): the desired state when there is one, else what the
        # workers serve; never `desired()`, which adopts and writes what a running engine serves.
        try:
            models = json.loads(self.desired_file.read_text()).get("models")
        except FileNotFoundError:
            models = self._served if self._served is not None else self.refresh()
        except (OSError, ValueError, AttributeError) as exc:
            raise errors.PermanentError(
                f"desired state {self.desired_file} is unreadable: {exc}; "
                "remove it and re-apply to rebuild it"
            ) from None
        return state.EngineState(replicas=record.replicas, models=sorted(models or {}))

    def stop(self) -> bool:
        for admin in self._admins.values():
            admin.close()
        self._admins.clear()
        return self.process.stop()

    def _ensure_prometheus(self) -> None:
        """The workspace's own Prometheus (`metrics: prometheus`) runs beside the engine: it is
        started here, with the engine, never by the provider factory. New workers have new
        admin addresses: a running one follows them (`start` re-syncs its targets)."""
        from mlops.providers.metrics import prometheus

        server = prometheus.PrometheusServer(self.workspace)
        if self.workspace.config.metrics == "prometheus" and prometheus.installed():
            server.start()
        elif server.running():
            server.sync_targets()

    def worker_admin_urls(self) -> list[str]:
        """Every worker's admin address, as each announced it (STATE_DIR/worker-<i>.json)."""
        record = self.process.record()
        return record.admin_urls() if record else []

    def _workers(self) -> list[str | None]:
        """Worker i's admin address, None while it has not announced one (it is starting,
        restarting or gone): such a worker still counts, as one that does not answer."""
        record = self.process.record()
        if record is None:
            return []
        return [w.admin_url if w is not None else None for w in record.workers()]

    def reachable(self) -> bool:
        return any(self._alive(url) for url in self.worker_admin_urls())

    def inference_url(self) -> str:
        serve = self.workspace.config.serve
        return f"http://{serve.host}:{serve.port}"

    # -- reads -------------------------------------------------------------------------------

    def refresh(self, names: Sequence[str] | None = None) -> dict[str, state.RuntimeModel]:
        """One routing, index and metrics read per worker, merged; {} when nothing runs.
        The models' request rates (summed over workers) are kept in `request_rates`."""
        urls = self._workers()
        views: list[runtime_view.WorkerView | None] = []
        for url in urls:
            if url is None:
                views.append(None)
                continue
            admin = self._admin(url)
            try:
                view = runtime_view.WorkerView(
                    admin.routing(), admin.index(), runtime_view.rates(admin.metrics_text())
                )
            except (engine_client.EngineUnavailable, engine_client.EngineRejected):
                views.append(None)
                continue
            views.append(view)
            for name, table in (view.routing.get("models") or {}).items():
                if isinstance(table, dict):
                    self._last_read[(url, name)] = table
        merged = runtime_view.merge(views, len(urls), self._staged_settings)
        merged = {
            n: m.model_copy(update={"served_sha256": self._served_digests(views, m)})
            for n, m in merged.items()
        }
        self.request_rates = runtime_view.total_rates(views)
        self._served = set(merged)
        if names is not None:
            wanted = set(names)
            merged = {n: m for n, m in merged.items() if n in wanted}
        return merged

    # -- changes -----------------------------------------------------------------------------

    def stage(self, name: str, semver: str, artifact: Path, settings: Mapping[str, Any]) -> Path:
        """Copy the artifact into the repository layout the engine reads (atomic per file)."""
        directory = self._version_dir(name, semver)
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / "model.onnx"
        if not _same_file(artifact, target):
            with artifact.open("rb") as source, fsio.atomic_writer(target) as out:
                shutil.copyfileobj(source, out)
        fsio.atomic_write(
            directory / "settings.json", json.dumps(dict(settings), indent=2, sort_keys=True)
        )
        return directory

    def load(self, name: str, semver: str, artifact: Path, settings: Mapping[str, Any]) -> None:
        """Stage, load on every worker with no traffic, and confirm READY on every worker."""
        # The engine loads the staged file only if it has this digest, now and at restarts.
        with artifact.open("rb") as handle:
            settings = {**settings, "sha256": hashlib.file_digest(handle, "sha256").hexdigest()}
        self.stage(name, semver, artifact, settings)
        self._pin_implicit_route(name)
        self._on_every_worker(lambda admin: admin.load(name, semver, settings))
        for url in self._urls():
            admin = self._admin(url)
            rows = {(r["name"], r["version"]): r for r in admin.index()}
            row = rows.get((name, semver))
            if row is None or row.get("state") != "READY":
                reason = (row or {}).get("reason") or "not in its index"
                raise errors.TransientError(f"{name}@{semver} is not ready on {url}: {reason}")
        entry = self.desired().get(name, {})
        if semver not in entry.get("loaded", []):
            self._record(name, loaded=sorted([*entry.get("loaded", []), semver]))

    def unload(self, name: str, semver: str) -> None:
        """Drain and unload on every worker (idempotent), then drop the staged files so a
        restarted engine cannot bring the version back. It leaves the desired state first."""
        entry = self.desired().get(name, {})
        if semver in entry.get("loaded", []):
            self._record(name, loaded=[v for v in entry["loaded"] if v != semver])
        if self.process.record() is not None:
            self._on_every_worker(lambda admin: admin.unload(name, semver))
        shutil.rmtree(self._version_dir(name, semver), ignore_errors=True)
        model_dir = self._version_dir(name, semver).parent
        if model_dir.is_dir() and not any(model_dir.iterdir()):
            model_dir.rmdir()

    def set_traffic(
        self,
        name: str,
        weights: Mapping[str, int],
        shadow: state.ShadowRoute | None,
        *,
        rollback: bool = False,
    ) -> int:
        """Put one table on every worker under a new generation, then read it back from each.

        The table enters the desired state once every worker confirmed it, so a restarted
        engine never starts from a table nobody confirmed. A `rollback` table enters it first,
        before any worker is touched: whatever happens next, no restart serves the version it
        takes out; with no engine running that is the whole change (nothing serves)."""
        want_shadow = shadow.model_dump() if shadow else None
        recorded = self.desired().get(name, {})
        if rollback:
            generation = int(recorded.get("generation", 0)) + 1
            self._record(name, weights=dict(weights), shadow=want_shadow, generation=generation)
            if self.process.record() is None:
                return generation
        urls = self._urls()
        silent: dict[str, str] = {}  # worker -> why it did not answer
        seen: dict[str, int] = {}  # worker -> the highest generation it reported
        tables = self._read_tables(name, urls, silent, seen)
        current = list(tables.values())
        if (
            not silent
            and all(c is not None and _same_table(c, weights, want_shadow) for c in current)
            and len({int(c["generation"]) for c in current if c is not None}) == 1
        ):
            generation = int(current[0]["generation"]) if current[0] is not None else 0
            self._record_table(name, weights, want_shadow, generation)
            return generation  # already in force everywhere: nothing to change
        # Above every generation any worker (or the desired state) has seen, so no worker can
        # refuse it as stale.
        generation = 1 + max([int(recorded.get("generation", 0)), *seen.values()])
        for url in tables:
            try:
                self._admin(url).set_routing(name, weights, want_shadow, generation)
            except engine_client.EngineUnavailable as exc:
                silent[url] = exc.message  # the others still get the table
        confirmed = self._read_tables(name, [u for u in tables if u not in silent], silent, {})
        wrong = {
            url: table
            for url, table in confirmed.items()
            if table is None
            or int(table["generation"]) != generation
            or not _same_table(table, weights, want_shadow)
        }
        if silent or wrong:
            raise errors.TransientError(
                self._unconfirmed(name, generation, weights, want_shadow, urls, silent, wrong)
                + (
                    "; the desired state already has it: a restarted worker starts from it"
                    if rollback
                    else ""
                )
            )
        self._record_table(name, weights, want_shadow, generation)
        return generation

    def _read_tables(
        self, name: str, urls: Sequence[str], silent: dict[str, str], seen: dict[str, int]
    ) -> dict[str, dict[str, Any] | None]:
        """Each answering worker's table of `name` (None: it has none); a worker that does
        not answer goes to `silent` and is not asked again in this change."""
        found: dict[str, dict[str, Any] | None] = {}
        for url in urls:
            try:
                doc = self._routing(url)
            except engine_client.EngineUnavailable as exc:
                silent[url] = exc.message
                continue
            table = doc["models"].get(name)
            found[url] = table
            generation = int(doc.get("generation", 0))
            if table is not None:
                generation = max(generation, int(table.get("generation", 0)))
                self._last_read[(url, name)] = table
            seen[url] = generation
        return found

    def _unconfirmed(
        self,
        name: str,
        generation: int,
        weights: Mapping[str, int],
        shadow: Mapping[str, Any] | None,
        urls: Sequence[str],
        silent: Mapping[str, str],
        wrong: Mapping[str, dict[str, Any] | None],
    ) -> str:
        """Which worker did not confirm, and what it is known to hold."""
        parts = []
        for url in urls:
            if url in silent:
                last = self._last_read.get((url, name))
                held = f"last read from it: {_describe(last)}" if last else "never read"
                parts.append(f"{url} did not answer ({silent[url]}; {held})")
            elif url in wrong:
                parts.append(f"{url} holds {_describe(wrong[url])}")
        good = len(urls) - len(parts)
        return (
            f"routing generation {generation} of {name} ({_describe_table(weights, shadow)}) is "
            f"confirmed by {good} of {len(urls)} workers: " + "; ".join(parts)
        )

    # -- desired state -------------------------------------------------------------------------

    @property
    def desired_file(self) -> Path:
        return self.process.state_dir / DESIRED_FILE

    def desired(self) -> dict[str, dict[str, Any]]:
        """Per model, what a starting worker loads and routes: {"loaded", "weights", "shadow",
        "generation"}. Without a file yet: what a running engine serves now."""
        try:
            doc = json.loads(self.desired_file.read_text())
        except FileNotFoundError:
            return self._seed()
        except (OSError, ValueError) as exc:
            raise errors.PermanentError(
                f"desired state {self.desired_file} is unreadable: {exc}; "
                "remove it and re-apply to rebuild it"
            ) from None
        models = doc.get("models") if isinstance(doc, dict) else None
        if not isinstance(models, dict):
            raise errors.PermanentError(f"desired state {self.desired_file} has no models")
        return models

    def _seed(self) -> dict[str, dict[str, Any]]:
        # An engine started before the controller kept a desired state: adopt (and keep) what
        # it serves, so that the next start does not drop what this change leaves untouched.
        if self.process.record() is None:
            return {}
        seeded: dict[str, dict[str, Any]] = {}
        for name, model in self.refresh().items():
            seeded[name] = {
                "loaded": sorted(v for v, s in model.loaded.items() if s == "ready"),
                "weights": dict(model.weights),
                "shadow": model.shadow.model_dump() if model.shadow else None,
                "generation": model.generation,
            }
        self._save_desired(seeded)
        return seeded

    def _record_table(
        self, name: str, weights: Mapping[str, int], shadow: Any, generation: int
    ) -> None:
        entry = self.desired().get(name, {})
        wanted = {"weights": dict(weights), "shadow": shadow, "generation": generation}
        if any(entry.get(k) != v for k, v in wanted.items()):
            self._record(name, **wanted)

    def _record(self, name: str, **changes: Any) -> None:
        models = self.desired()
        base: dict[str, Any] = {"loaded": [], "weights": {}, "shadow": None, "generation": 0}
        entry = {**base, **models.get(name, {}), **changes}
        if entry["loaded"] or any(w > 0 for w in entry["weights"].values()) or entry["shadow"]:
            models[name] = entry
        else:
            models.pop(name, None)
        self._save_desired(models)

    def _save_desired(self, models: Mapping[str, Any]) -> None:
        doc = {"format": DESIRED_FORMAT, "models": dict(sorted(models.items()))}
        fsio.atomic_write(self.desired_file, json.dumps(doc, indent=1, sort_keys=True))

    def served_artifact(self, name: str, semver: str) -> Path | None:
        """The file the engine loads for a version (conformance re-hashes it)."""
        path = self.process.repository / name / semver / "model.onnx"
        return path if path.is_file() else None

    # -- helpers -----------------------------------------------------------------------------

    def _served_digests(
        self, views: Sequence[runtime_view.WorkerView | None], model: state.RuntimeModel
    ) -> dict[str, list[str]]:
        """semver -> the distinct sha256 digests the workers serve for each loaded version.

        The engine reports the digest of what it loaded (`sha256` in its index rows); for an
        engine that does not, the staged file's digest stands in (what a restart would load)."""
        found: dict[str, set[str]] = {}
        for view in views:
            for row in view.index if view is not None else []:
                digest = row.get("sha256")
                if row.get("name") == model.name and row.get("version") in model.loaded and digest:
                    found.setdefault(row["version"], set()).add(str(digest))
        for semver in model.loaded:
            if semver not in found:
                staged = self._staged_digest(self.process.repository / model.name / semver)
                if staged is not None:
                    found[semver] = {staged}
        return {v: sorted(d) for v, d in sorted(found.items())}

    def _staged_digest(self, directory: Path) -> str | None:
        # Keyed by the file's identity and mtime: refresh runs often during an apply.
        path = directory / "model.onnx"
        try:
            info = path.stat()
        except OSError:
            return None
        key = (str(path), info.st_ino, info.st_size, info.st_mtime_ns)
        digest = self._digests.get(key)
        if digest is None:
            try:
                with path.open("rb") as handle:
                    digest = hashlib.file_digest(handle, "sha256").hexdigest()
            except OSError:
                return None
            self._digests[key] = digest
        return digest

    def _pin_implicit_route(self, name: str) -> None:
        """A model without a weight table sends everything to its newest version, so loading a
        canary would take all traffic: pin the current implicit choice first."""
        model = self.refresh([name]).get(name)
        if model is None or model.weights or not model.loaded:
            return
        newest = max(model.loaded, key=runtime_view.semver_key)
        self.set_traffic(name, {newest: 100}, None)

    def _admin(self, url: str) -> engine_client.AdminClient:
        admin = self._admins.get(url)
        if admin is None:
            admin = self._admins[url] = Admin(
                url, timeout=self.admin_timeout, token=self.process.admin_token()
            )
        return admin

    def _urls(self) -> list[str]:
        """Every worker's admin address; a change must reach them all, so a worker that has
        not announced one yet is an error worth retrying."""
        workers = self._workers()
        if not workers:
            raise errors.TransientError("the local engine is not running (start it with apply)")
        missing = [i for i, url in enumerate(workers) if url is None]
        if missing:
            raise errors.TransientError(
                f"engine worker {missing[0]} has not announced its admin address "
                f"({self.process.state_dir}/worker-{missing[0]}.json): it is starting or "
                "restarting"
            )
        return [url for url in workers if url is not None]

    def _routing(self, url: str) -> dict[str, Any]:
        admin = self._admin(url)
        return admin.routing()

    def _on_every_worker(self, call: Any) -> None:
        urls = self._urls()

        def one(url: str) -> None:
            admin = self._admin(url)
            call(admin)

        # Loads take seconds (warm-up): do the workers side by side.
        with ThreadPoolExecutor(max_workers=len(urls)) as pool:
            for future in [pool.submit(one, url) for url in urls]:
                future.result()

    def _alive(self, url: str) -> bool:
        admin = self._admin(url)
        return admin.live()

    def _version_dir(self, name: str, semver: str) -> Path:
        path = self.process.repository / name / semver
        return self.workspace.inside(path, what="repository path")

    def _staged_settings(self, name: str, semver: str) -> dict[str, Any] | None:
        try:
            loaded = json.loads(
                (self.process.repository / name / semver / "settings.json").read_text()
            )
        except (OSError, ValueError):
            return None
        return loaded if isinstance(loaded, dict) else None


def _describe(table: Mapping[str, Any] | None) -> str:
    if table is None:
        return "no table"
    text = _describe_table(table.get("weights") or {}, table.get("shadow"))
    return f"generation {table.get('generation', 0)}, {text}"


def _describe_table(weights: Mapping[str, Any], shadow: Mapping[str, Any] | None) -> str:
    text = " / ".join(f"{v} {w}%" for v, w in weights.items() if w) or "no weights"
    if shadow:
        text += f", mirror {shadow['percent']:g}% to {shadow['version']}"
    return text


def _same_table(table: Mapping[str, Any], weights: Mapping[str, int], shadow: Any) -> bool:
    got_shadow = table.get("shadow")
    if got_shadow is not None:
        got_shadow = {"version": got_shadow["version"], "percent": round(got_shadow["percent"])}
    return dict(table.get("weights") or {}) == dict(weights) and got_shadow == shadow


def _same_file(source: Path, target: Path) -> bool:
    return target.is_file() and filecmp.cmp(source, target, shallow=False)
