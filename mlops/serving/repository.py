"""The model repository: loads, reloads and unloads versions at run time.

Readers (the request path) see `live`, which holds only warmed versions. A load builds and
warms the session in the loader pool, then swaps it in on the event loop in one step; an
unload removes the version first, so no new request can reach it, then drains it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from mlops.serving import schema
from mlops.serving import settings as settings_mod
from mlops.serving.batcher import Batcher
from mlops.serving.errors import BadRequest, Conflict, NotFound, ServingError
from mlops.serving.session import Session
from mlops.serving.stats import StatsBook
from mlops.serving.version import ModelVersion, State

# Loader threads run this much nicer than serving. On a core shared with the event loop, a
# load (session creation, warm-up, first-touch page faults) otherwise takes CPU slices of
# several ms from it; at lower weight the scheduler lets the woken loop preempt it sooner,
# while the load still gets a quarter of a saturated core (SCHED_IDLE would starve it).
LOADER_NICE_INCREMENT = 10

log = logging.getLogger("mlops.serving")


class IntegrityError(ServingError):
    """The model file is not the one the controller expects (or changed while loading)."""

    status = 409


@dataclass(slots=True)
class Entry:
    state: State
    reason: str = ""


class Repository:
    def __init__(
        self,
        root: Path | None,
        executor: Executor,
        inference_threads: int,
        intra_op_threads: int,
        stats: StatsBook,
        on_change: Callable[[], None],
    ) -> None:
        self.root = root
        self._executor = executor
        self._inference_threads = inference_threads
        self._intra_op_threads = intra_op_threads
        self._stats = stats
        self._on_change = on_change
        # Loading is CPU and disk work of its own: keep it out of the inference pool.
        self._loader = ThreadPoolExecutor(
            2, thread_name_prefix="mlops-load", initializer=_lower_priority
        )
        self.live: dict[str, dict[str, ModelVersion]] = {}
        self.entries: dict[tuple[str, str], Entry] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.starting = True
        # Set at shutdown: warm-ups stop (the run in progress too) and no new load starts.
        self._stopping = threading.Event()
        self._warming: set[Session] = set()
        self._warming_lock = threading.Lock()

    def get(self, name: str, version: str) -> ModelVersion:
        found = self.live.get(name, {}).get(version)
        if found is None:
            if name not in self.live:
                raise NotFound(f"Request for unknown model: '{name}' is not found")
            # Triton's wording: its clients look for "Request for unknown model".
            raise NotFound(f"Request for unknown model: '{name}' version {version} is not found")
        return found

    def ready(self) -> bool:
        return not self.starting and all(e.state is State.READY for e in self.entries.values())

    def on_disk(self) -> list[tuple[str, str]]:
        if self.root is None or not self.root.is_dir():
            return []
        return sorted(
            (m.parent.parent.name, m.parent.name) for m in self.root.glob("*/*/model.onnx")
        )

    def index(self) -> list[dict[str, str]]:
        """One row per assigned or staged version; `sha256` is the digest of the model file the
        loaded session was built from ("" when nothing of that version is loaded)."""
        rows = {
            key: {
                "name": key[0],
                "version": key[1],
                "state": e.state.value,
                "reason": e.reason,
                "sha256": self._served_digest(*key),
            }
            for key, e in self.entries.items()
        }
        for key in self.on_disk():
            rows.setdefault(
                key,
                {
                    "name": key[0],
                    "version": key[1],
                    "state": "UNAVAILABLE",
                    "reason": "unloaded",
                    "sha256": "",
                },
            )
        return [rows[k] for k in sorted(rows)]

    def _served_digest(self, name: str, version: str) -> str:
        found = self.live.get(name, {}).get(version)
        return "" if found is None else found.session.sha256

    async def load(
        self,
        name: str,
        version: str,
        override: dict[str, Any] | None,
        sha256: str | None = None,
    ) -> None:
        """Load (or reload with new settings or a changed model file) and warm one version;
        idempotent. The model file must have the expected sha256 (`sha256`, else the
        settings' "sha256") when one is given."""
        key = (_check_name(name), _check_name(version))
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            old = self.live.get(name, {}).get(version)
            loop = asyncio.get_running_loop()
            try:
                raw = self._settings(name, version, override)
                model = self._dir(name, version) / "model.onnx"
                if old is None:
                    self.entries[key] = Entry(State.LOADING)
                parsed = settings_mod.parse(raw)
                expected = sha256 or parsed.sha256
                identity, digest = await loop.run_in_executor(self._loader, _digest, model)
                if expected is not None and digest != expected:
                    if old is not None and old.session.sha256 == expected:
                        return  # already serving the expected bytes (loaded before a change)
                    raise IntegrityError(f"{model} has sha256 {digest}, expected {expected}")
                if old is not None and old.settings.raw == raw and old.session.sha256 == digest:
                    return  # same settings, same bytes: nothing to do
                _check_batchable(parsed)
                session = await loop.run_in_executor(
                    self._loader, self._build, str(model), parsed, identity
                )
                session.sha256 = digest
            except NotFound:
                raise  # nothing at DIR/NAME/VERSION: not assigned
            except IntegrityError as exc:
                # Never serve bytes that are not the expected ones, not even the old session's.
                self.entries[key] = Entry(State.UNAVAILABLE, exc.message)
                if old is not None:
                    await self._withdraw(name, version)
                raise Conflict(f"failed to load {name}@{version}: {exc.message}") from None
            except ServingError as exc:
                self._failed(key, old is None, exc.message)
                raise BadRequest(f"failed to load {name}@{version}: {exc.message}") from None
            except Exception as exc:
                # MemoryError, OSError, a shut-down loader...: one line, and never left LOADING.
                log.warning("loading %s@%s failed", name, version, exc_info=True)
                reason = _first_line(exc)
                self._failed(key, old is None, reason)
                raise ServingError(f"failed to load {name}@{version}: {reason}") from None
            stats = self._stats.get(name, version)
            b = parsed.batching
            slots = b.max_concurrent_batches or (1 if b.enabled else self._inference_threads)
            batcher = Batcher(
                session.run,
                b,
                self._executor,
                slots,
                stats,
                f"{name}@{version}",
                session.cost,
                session.clock,
            )
            self.live.setdefault(name, {})[version] = ModelVersion(
                name, version, session, batcher, stats
            )
            self.entries[key] = Entry(State.READY)
            self._on_change()
            if old is not None:
                await old.batcher.drain()

    def _failed(self, key: tuple[str, str], first: bool, reason: str) -> None:
        # A failed first load stays assigned and UNAVAILABLE (ready is false until it is loaded
        # or unloaded); a failed reload leaves the running session serving.
        if first:
            self.entries[key] = Entry(State.UNAVAILABLE, reason)

    def _build(
        self, path: str, parsed: settings_mod.VersionSettings, identity: tuple[int, ...]
    ) -> Session:
        if self._stopping.is_set():
            raise ServingError("the engine is shutting down")
        session = Session(path, parsed, self._intra_op_threads)
        if _identity(os.stat(path)) != identity:
            # Replaced or rewritten between hashing and loading: the digest is not the
            # loaded bytes' any more.
            raise IntegrityError(f"{path} changed while it was loading")
        with self._warming_lock:
            self._warming.add(session)
        try:
            session.warm_up(parsed.warmup_requests, stop=self._stopping)
        finally:
            with self._warming_lock:
                self._warming.discard(session)
        if self._stopping.is_set():
            raise ServingError("the engine is shutting down")
        return session

    def stop_loading(self) -> None:
        """Shutdown: abort warm-ups in progress and start no new load (thread-safe)."""
        self._stopping.set()
        with self._warming_lock:
            for session in self._warming:
                session.abort_warm_up()
        self._loader.shutdown(wait=False, cancel_futures=True)

    async def unload(self, name: str, version: str) -> None:
        """Stop routing to a version, wait for its in-flight requests, then release it."""
        key = (name, version)
        async with self._locks.setdefault(key, asyncio.Lock()):
            self.entries.pop(key, None)
            await self._withdraw(name, version)

    async def _withdraw(self, name: str, version: str) -> None:
        """Take a version out of `live` (no new request reaches it), then drain it."""
        versions = self.live.get(name, {})
        old = versions.pop(version, None)
        if not versions:
            self.live.pop(name, None)
        if old is None:
            return
        self._on_change()
        await old.batcher.drain()

    def versions_of(self, name: str) -> list[str]:
        assigned = {v for (n, v) in self.entries if n == name}
        return sorted(assigned | set(self.live.get(name, {})))

    def _dir(self, name: str, version: str) -> Path:
        if self.root is None:
            raise NotFound("the engine was started without --repository")
        path = self.root / name / version
        if not (path / "model.onnx").is_file():
            raise NotFound(f"no model at {path}/model.onnx")
        return path

    def _settings(self, name: str, version: str, override: dict[str, Any] | None) -> dict[str, Any]:
        file = self._dir(name, version) / "settings.json"
        raw: dict[str, Any] = {}
        if file.is_file():
            try:
                loaded = orjson.loads(file.read_bytes())
            except orjson.JSONDecodeError as exc:
                raise BadRequest(f"{file}: invalid JSON: {exc}") from None
            if not isinstance(loaded, dict):
                raise BadRequest(f"{file}: settings must be a JSON object")
            raw = loaded
        if override is not None:
            raw = {**raw, **override}
        return raw


def _lower_priority() -> None:
    # Linux keeps a nice value per thread: PRIO_PROCESS with a thread id renices only it.
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()
        os.setpriority(
            os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + LOADER_NICE_INCREMENT
        )


def _check_name(text: str) -> str:
    try:
        return schema.check_name(text)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def _check_batchable(parsed: settings_mod.VersionSettings) -> None:
    if parsed.batching.enabled:
        for spec in parsed.inputs:
            if not spec.shape or spec.shape[0] != -1:
                raise BadRequest(f"batching needs -1 as the first dimension of input '{spec.name}'")


def _first_line(exc: BaseException) -> str:
    text = " ".join((str(exc).strip().splitlines() or [""])[0].split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _identity(info: os.stat_result) -> tuple[int, ...]:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def _digest(path: Path) -> tuple[tuple[int, ...], str]:
    """The file's identity and sha256, read through one open file."""
    with path.open("rb") as handle:
        identity = _identity(os.fstat(handle.fileno()))
        return identity, hashlib.file_digest(handle, "sha256").hexdigest()
