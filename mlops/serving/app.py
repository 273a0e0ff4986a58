"""The engine: one ASGI application per worker process, wiring repository, router and metrics.

A raw ASGI callable rather than a framework: the inference path is a prefix check, a split
and a call, which keeps the front door within reach of a bare onnxruntime handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from mlops import fsio
from mlops.serving import admin, desired, infer, intake, metrics, tracing, triton_compat
from mlops.serving.config import ServeConfig, read_admin_token
from mlops.serving.errors import (
    BadRequest,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    ServingError,
)
from mlops.serving.feedback import FeedbackBook
from mlops.serving.http import Receive, Scope, Send, respond_error, respond_json
from mlops.serving.repository import Repository
from mlops.serving.router import Router
from mlops.serving.sampling import Sampler
from mlops.serving.stats import StatsBook

log = logging.getLogger("mlops.serving")

_INFER_PREFIX = "/v2/models/"
_INFER_SUFFIX = "/infer"
LOAD_PATH = "/v2/engine/load"  # admin only: in-flight and queued requests of this worker


class Engine:
    def __init__(
        self,
        config: ServeConfig,
        routing_file: Path | None = None,
        loaded_file: Path | None = None,
        desired_file: Path | None = None,
    ) -> None:
        self.config = config
        self.max_body_bytes = config.max_body_bytes
        self.intake = intake.Intake(config.max_body_bytes)  # budget and decoding of large bodies
        self.stats = StatsBook()
        self._executor = ThreadPoolExecutor(config.threads, thread_name_prefix="mlops-infer")
        self.repository = Repository(
            config.repository,
            self._executor,
            config.threads,
            config.intra_op_threads,
            self.stats,
            on_change=self._changed,
        )
        self.router = Router(self.repository.live, routing_file)
        # The controller's desired state, when it keeps one, wins over this worker's own files.
        self._desired = desired.read(desired_file) if desired_file is not None else None
        if self._desired is not None:
            self.router.adopt(self._desired.tables())
        self.feedback = FeedbackBook(self.stats)
        # Inference requests received and not answered yet: the supervisor's autoscaling load.
        self.inflight = 0
        # Live input samples per version, for drift (sampling.py); memory only.
        self.sampler = Sampler(config.sample_rate, config.sample_rows, config.sample_max_bytes)
        self.tracer = tracing.make_tracer()
        self.registry = metrics.registry(
            metrics.EngineCollector(
                self.stats,
                self._queue_depths,
                lambda: self.router.generation,
                drift=self.sampler.drift,
            )
        )
        self._startup: asyncio.Task[None] | None = None
        # Admin endpoints answer only on connections accepted by the admin socket (its port,
        # as uvicorn reports it in scope["server"]) and, when configured, with the token.
        self._admin_port: int | None = None
        self._admin_token = (
            None if config.admin_token_file is None else read_admin_token(config.admin_token_file)
        )
        # What this worker has loaded, so that a worker the supervisor restarts loads the same
        # versions again (with their settings) instead of coming back empty.
        self._loaded_file = loaded_file

    def serve_admin_on(self, port: int) -> None:
        """Connections to this local port (the admin socket) may use the admin endpoints."""
        self._admin_port = port

    def check_admin(self, scope: Scope) -> None:
        """Refuse an admin call that came in on the inference address or without the token."""
        server = scope.get("server")
        if self._admin_port is None or server is None or server[1] != self._admin_port:
            raise Forbidden(f"{scope['path']} is served only on the engine's admin address")
        if self._admin_token is None:
            return
        given = b""
        for key, value in scope["headers"]:
            if key == b"authorization":
                scheme, _, given = value.partition(b" ")
                if scheme.lower() != b"bearer":
                    given = b""
                break
        if not hmac.compare_digest(given.strip(), self._admin_token):
            raise Forbidden("admin token missing or wrong (Authorization: Bearer TOKEN)")

    def ready(self) -> bool:
        """Start-up is over, every assigned version is READY, and every version a routing
        table sends traffic (or mirrors) to is loaded."""
        return self.unready_reason() is None

    def unready_reason(self) -> str | None:
        """Why the engine is not ready (one line), or None when it is."""
        if self.router.problem is not None:
            return self.router.problem
        if not self.repository.ready():
            if self.repository.starting:
                return "loading the repository at start-up"
            return "a version is not READY (see POST /v2/repository/index)"
        missing = self.router.missing()
        if missing:
            return "routed but not loaded: " + ", ".join(f"{n}@{v}" for n, v in missing[:5])
        return None

    def _changed(self) -> None:
        self.router.rebuild()
        if self._loaded_file is not None and not self.repository.starting:
            doc = [
                {"name": name, "version": v, "settings": mv.settings.raw}
                for name, versions in self.repository.live.items()
                for v, mv in versions.items()
            ]
            with contextlib.suppress(OSError):
                fsio.atomic_write(self._loaded_file, orjson.dumps(doc))

    def _remembered(self) -> list[tuple[str, str, dict[str, Any] | None]]:
        if self._desired is not None:
            # Staged settings.json holds each version's settings.
            return [(name, v, None) for name, v in self._desired.loaded()]
        if self._loaded_file is None:
            return []
        try:
            doc = orjson.loads(self._loaded_file.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return []
        return [
            (str(e["name"]), str(e["version"]), e.get("settings"))
            for e in doc
            if isinstance(e, dict) and "name" in e and "version" in e
        ]

    def _load_report(self) -> dict[str, Any]:
        """For the supervisor's autoscaler: this worker's load, and what it serves (a worker
        is added only while every worker serves what the controller's desired state says)."""
        return {
            "inflight": self.inflight,
            "queued": sum(self._queue_depths().values()),
            "loaded": sorted(f"{n}@{v}" for n, vs in self.repository.live.items() for v in vs),
            "generations": {name: t.generation for name, t in self.router.tables.items()},
        }

    def _queue_depths(self) -> dict[tuple[str, str], int]:
        return {
            (name, v): mv.batcher.depth
            for name, versions in self.repository.live.items()
            for v, mv in versions.items()
        }

    async def load(
        self,
        name: str,
        version: str | None,
        settings: dict[str, Any] | None,
        sha256: str | None = None,
    ) -> list[str]:
        if version is None:
            if sha256 is not None:
                raise BadRequest("parameters.sha256 needs parameters.version")
            versions = [v for n, v in self.repository.on_disk() if n == name]
            if not versions:
                raise NotFound(f"no versions of '{name}' in the repository")
        else:
            versions = [version]
        for v in versions:
            await self.repository.load(name, v, settings, sha256)
        return versions

    async def unload(self, name: str, version: str | None) -> list[str]:
        self.router.check_unload(name, version)
        versions = [version] if version is not None else self.repository.versions_of(name)
        for v in versions:
            await self.repository.unload(name, v)
            self.sampler.forget(name, v)
        self.router.forget(name)
        return versions

    async def _load_all(self) -> None:
        remembered = self._remembered()
        if self.config.load_all:
            # Everything on disk, with the settings a load request gave a version last time.
            known = {(n, v): raw for n, v, raw in remembered}
            todo = [(n, v, known.get((n, v))) for n, v in self.repository.on_disk()]
        else:
            todo = remembered
        try:
            for name, version, settings in todo:
                try:
                    await self.repository.load(name, version, settings)
                except ServingError as exc:
                    log.warning("%s", exc.message)
        finally:
            self.repository.starting = False
            self._changed()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        try:
            if path.startswith(_INFER_PREFIX) and path.endswith(_INFER_SUFFIX):
                parts = path[len(_INFER_PREFIX) : -len(_INFER_SUFFIX)].split("/")
                if len(parts) == 1:
                    name, version = parts[0], None
                elif len(parts) == 3 and parts[1] == "versions":
                    name, version = parts[0], parts[2]
                else:
                    raise NotFound(f"no endpoint {path}")
                if scope["method"] != "POST":
                    raise MethodNotAllowed("use POST")
                self.inflight += 1
                try:
                    await infer.handle(self, scope, receive, send, name, version)
                finally:
                    self.inflight -= 1
            elif path == LOAD_PATH:  # the supervisor's autoscaler (autoscale.py)
                self.check_admin(scope)
                admin.require_method(scope["method"], "GET")
                await respond_json(send, 200, self._load_report())
            elif path == "/metrics":
                await admin.metrics(self, send)
            elif path == "/v2" or path.startswith("/v2/"):
                parts = path[4:].rstrip("/").split("/")
                if triton_compat.handles(parts):  # Triton's statistics and config extensions
                    await triton_compat.handle(self, scope, send, parts)
                else:
                    await admin.handle(self, scope, receive, send, parts)
            else:
                raise NotFound(f"no endpoint {path}")
        except ServingError as exc:
            await respond_error(send, exc.status, exc.message)
        except Exception as exc:
            # Never a traceback to the client and never a dead worker: one line each way.
            log.exception("internal error on %s", path)
            await respond_error(send, 500, f"internal error: {type(exc).__name__}")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.config.load_all or self._remembered():
                    self._startup = asyncio.create_task(self._load_all())
                else:
                    self.repository.starting = False
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.repository.stop_loading()
                if self._startup is not None:
                    self._startup.cancel()
                self._executor.shutdown(wait=False, cancel_futures=True)
                await self.intake.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
