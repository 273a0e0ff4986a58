"""The local target's Runtime: the mlops engine, driven only through its admin API.

Every change goes to every worker's admin address, because each worker has its own
repository and routing table; a change counts as done only when every worker reads it back.
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mlops import errors
from mlops.providers import engine_client, engine_process, runtime_view
from mlops.state import models as state
from mlops.workspace import Workspace

Admin = engine_client.AdminClient


class LocalRuntime:
    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.process = engine_process.EngineProcess(workspace)
        # One keep-alive connection pool per worker: a rollback's weight change is a few calls.
        self._admins: dict[str, engine_client.AdminClient] = {}
        # Requests/s per model as of the last refresh (the engine's `mlops_request_rate`).
        self.request_rates: dict[str, float] = {}
        self._digests: dict[tuple[str, int, int, int], str] = {}  # staged file -> sha256

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, replicas: int) -> None:
        self.ensure_running(replicas)

    def ensure_running(self, replicas: int) -> None:
        """Start the engine if needed. A different replica count restarts it and restores what
        it served (versions and weights): the engine cannot change its worker count live."""
        record = self.process.record()
        if record is not None and record.replicas == replicas:
            return
        snapshot = self.refresh() if record is not None else {}
        if record is not None:
            self.stop()
        self.process.start(replicas)
        self._retarget_prometheus()
        for name, model in snapshot.items():
            for semver in model.loaded:
                settings = self._staged_settings(name, semver)
                self._on_every_worker(
                    lambda admin, n=name, v=semver, s=settings: admin.load(n, v, s)
                )
            if model.weights:
                self.set_traffic(name, model.weights, model.shadow)

    def stop(self) -> bool:
        for admin in self._admins.values():
            admin.close()
        self._admins.clear()
        return self.process.stop()

    def _retarget_prometheus(self) -> None:
        # New workers, new admin addresses: a running workspace Prometheus must follow them.
        from mlops.providers import prometheus

        server = prometheus.PrometheusServer(self.workspace)
        if server.running():
            server.sync_targets()

    def worker_admin_urls(self) -> list[str]:
        record = self.process.record()
        return record.admin_urls() if record else []

    def reachable(self) -> bool:
        return any(self._alive(url) for url in self.worker_admin_urls())

    def inference_url(self) -> str:
        serve = self.workspace.config.serve
        return f"http://{serve.host}:{serve.port}"

    # -- reads -------------------------------------------------------------------------------

    def refresh(self, names: Sequence[str] | None = None) -> dict[str, state.RuntimeModel]:
        """One routing, index and metrics read per worker, merged; {} when nothing runs.
        The models' request rates (summed over workers) are kept in `request_rates`."""
        urls = self.worker_admin_urls()
        views: list[runtime_view.WorkerView | None] = []
        for url in urls:
            admin = self._admin(url)
            try:
                views.append(
                    runtime_view.WorkerView(
                        admin.routing(), admin.index(), runtime_view.rates(admin.metrics_text())
                    )
                )
            except (engine_client.EngineUnavailable, engine_client.EngineRejected):
                views.append(None)
        merged = runtime_view.merge(views, len(urls), self._staged_settings)
        merged = {
            n: m.model_copy(update={"served_sha256": self._served_digests(views, m)})
            for n, m in merged.items()
        }
        self.request_rates = runtime_view.total_rates(views)
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
            tmp = directory / ".model.onnx.tmp"
            shutil.copyfile(artifact, tmp)
            os.replace(tmp, target)
        tmp = directory / ".settings.json.tmp"
        tmp.write_text(json.dumps(dict(settings), indent=2, sort_keys=True))
        os.replace(tmp, directory / "settings.json")
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

    def unload(self, name: str, semver: str) -> None:
        """Drain and unload on every worker (idempotent), then drop the staged files so a
        restarted engine cannot bring the version back."""
        if self.process.record() is not None:
            self._on_every_worker(lambda admin: admin.unload(name, semver))
        shutil.rmtree(self._version_dir(name, semver), ignore_errors=True)
        model_dir = self._version_dir(name, semver).parent
        if model_dir.is_dir() and not any(model_dir.iterdir()):
            model_dir.rmdir()

    def set_traffic(
        self, name: str, weights: Mapping[str, int], shadow: state.ShadowRoute | None
    ) -> int:
        """Put one table on every worker under a new generation, then read it back from each."""
        want_shadow = shadow.model_dump() if shadow else None
        tables = [self._routing(url) for url in self._urls()]
        current = [t["models"].get(name) for t in tables]
        if all(c is not None and _same_table(c, weights, want_shadow) for c in current):
            generations = {int(c["generation"]) for c in current if c is not None}
            if len(generations) == 1:
                return generations.pop()  # already in force everywhere: nothing to change
        # Above every generation any worker has seen, so no worker can refuse it as stale.
        generation = 1 + max(
            max(
                int(t.get("generation", 0)), int((t["models"].get(name) or {}).get("generation", 0))
            )
            for t in tables
        )
        for url in self._urls():
            admin = self._admin(url)
            admin.set_routing(name, weights, want_shadow, generation)
        for url in self._urls():
            table = self._routing(url)["models"].get(name)
            if (
                table is None
                or int(table["generation"]) != generation
                or not _same_table(table, weights, want_shadow)
            ):
                raise errors.TransientError(
                    f"worker {url} did not confirm routing generation {generation} of {name}"
                )
        return generation

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
            admin = self._admins[url] = Admin(url, token=self.process.admin_token())
        return admin

    def _urls(self) -> list[str]:
        urls = self.worker_admin_urls()
        if not urls:
            raise errors.TransientError("the local engine is not running (start it with apply)")
        return urls

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


def _same_table(table: Mapping[str, Any], weights: Mapping[str, int], shadow: Any) -> bool:
    got_shadow = table.get("shadow")
    if got_shadow is not None:
        got_shadow = {"version": got_shadow["version"], "percent": round(got_shadow["percent"])}
    return dict(table.get("weights") or {}) == dict(weights) and got_shadow == shadow


def _same_file(source: Path, target: Path) -> bool:
    return target.is_file() and filecmp.cmp(source, target, shallow=False)
