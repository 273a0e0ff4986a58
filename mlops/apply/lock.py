"""The workspace lock: one apply (or promote/rollback) at a time per workspace.

`.mlops/lock.json` is created with O_EXCL semantics (written to a temporary file, then
hard-linked into place, so a reader never sees a half-written lock). A lock whose holder
died is reported as stale but never released automatically: only `mlops unlock LOCK_ID`
releases it, because the dead run may have left a rollout half-way and a human should look.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import socket
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from mlops import errors, fsio, pids

LOCK_FILE = "lock.json"


@dataclass(frozen=True)
class LockInfo:
    id: str
    holder: str  # user@host pid N
    host: str
    pid: int
    since: str
    plan: str | None
    operation: str = "apply"

    @property
    def alive(self) -> bool | None:
        """Whether the holder process still runs; None when it is on another host."""
        if self.host != socket.gethostname():
            return None
        return pids.pid_running(self.pid)

    def describe(self) -> str:
        text = f"lock {self.id} held by {self.holder} since {self.since} ({self.operation}"
        text += f", plan {self.plan})" if self.plan else ")"
        if self.alive is False:
            text += (
                f"; the holder is no longer running: if no apply is in progress, "
                f"release it with `mlops unlock {self.id}`"
            )
        return text


def read(state_dir: Path) -> LockInfo | None:
    path = state_dir / LOCK_FILE
    try:
        raw = json.loads(path.read_text())
        return LockInfo(
            id=str(raw["id"]),
            holder=str(raw["holder"]),
            host=str(raw["host"]),
            pid=int(raw["pid"]),
            since=str(raw["since"]),
            plan=raw.get("plan"),
            operation=str(raw.get("operation", "apply")),
        )
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise errors.MlopsError(
            f"lock file {path} is unreadable ({exc}); inspect it and remove it by hand"
        ) from None


class Lock:
    """Held workspace lock; a context manager that releases only its own lock."""

    def __init__(self, state_dir: Path, info: LockInfo) -> None:
        self.state_dir = state_dir
        self.info = info

    def release(self) -> None:
        current = read(self.state_dir)
        if current is not None and current.id == self.info.id:
            (self.state_dir / LOCK_FILE).unlink(missing_ok=True)

    def __enter__(self) -> Lock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def acquire(
    state_dir: Path,
    *,
    plan: str | None = None,
    operation: str = "apply",
    timeout: float = 0.0,
    poll: float = 0.2,
) -> Lock:
    """Take the lock, waiting up to `timeout` seconds; LockHeldError names the holder."""
    state_dir.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    info = LockInfo(
        id=secrets.token_hex(4),
        holder=f"{_user()}@{host} pid {os.getpid()}",
        host=host,
        pid=os.getpid(),
        since=datetime.now(UTC).isoformat(timespec="seconds"),
        plan=plan,
        operation=operation,
    )
    deadline = time.monotonic() + max(timeout, 0.0)
    path = state_dir / LOCK_FILE
    content = json.dumps(asdict(info), indent=1)
    while True:
        try:
            # Atomic create-if-absent, with the content already there (and durable).
            fsio.atomic_write(path, content, exclusive=True)
            return Lock(state_dir, info)
        except FileExistsError:
            holder = read(state_dir)
            if holder is None:
                continue  # released between our link and our read: try again at once
            if time.monotonic() >= deadline:
                raise errors.LockHeldError(f"workspace is locked: {holder.describe()}") from None
            time.sleep(min(poll, max(deadline - time.monotonic(), 0.01)))


def unlock(state_dir: Path, lock_id: str) -> LockInfo:
    """Release the lock only when `lock_id` matches; returns what was released."""
    current = read(state_dir)
    if current is None:
        raise errors.UsageError("the workspace is not locked")
    if current.id != lock_id:
        raise errors.UsageError(
            f"lock id {lock_id!r} does not match the current lock ({current.describe()})"
        )
    (state_dir / LOCK_FILE).unlink(missing_ok=True)
    return current


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
