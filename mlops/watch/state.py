"""What `mlops watch` remembers between rounds and across restarts: open drift episodes and
the outside changes it last reported. One JSON file in the workspace's .mlops/, replaced
atomically, so a crash or a SIGKILL leaves the previous round's state or this one's.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlops import errors, fsio, pids

FILE = "watch.json"
LOCK = "watch.pid"
FORMAT = 1
MAX_BYTES = 4 << 20  # a state file larger than this was not written by us


@dataclass
class Episode:
    """One drift episode of NAME@VERSION: opened when drift is found, closed when it clears."""

    model: str
    version: str
    opened_at: str
    features: list[str]
    notified: bool = False  # the on_drift command or webhook succeeded for this episode
    attempts: int = 0  # notifications tried (a failed one is tried again next round)


@dataclass
class WatchState:
    episodes: dict[str, Episode] = field(default_factory=dict)  # "name@version" -> episode
    outside: list[str] = field(default_factory=list)  # outside changes reported last round

    def to_json(self) -> str:
        doc = {
            "format": FORMAT,
            "episodes": {k: asdict(e) for k, e in sorted(self.episodes.items())},
            "outside": sorted(self.outside),
        }
        return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def read(path: Path) -> WatchState:
    try:
        if path.stat().st_size > MAX_BYTES:
            raise errors.UsageError(f"watch state {path} is larger than {MAX_BYTES} bytes")
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return WatchState()
    except (OSError, ValueError) as exc:
        raise errors.UsageError(f"watch state {path} is unreadable: {exc}; remove it") from None
    try:
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"format is not {FORMAT}")
        episodes = {str(k): Episode(**v) for k, v in dict(doc.get("episodes") or {}).items()}
        outside = [str(x) for x in list(doc.get("outside") or [])]
    except (TypeError, ValueError) as exc:
        raise errors.UsageError(f"watch state {path} is malformed ({exc}); remove it") from None
    return WatchState(episodes, outside)


def write(path: Path, state: WatchState) -> None:
    fsio.atomic_write(path, state.to_json())


class Lock:
    """One `mlops watch` per workspace: a pid file created exclusively; a stale one (its
    process is gone) is taken over."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> Lock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                owner = _owner(self.path)
                if owner is not None and pids.pid_running(owner):
                    raise errors.LockHeldError(
                        f"another mlops watch (pid {owner}) watches this workspace"
                    ) from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(f"{os.getpid()}\n")
            return self
        raise errors.LockHeldError(f"cannot take {self.path}")

    def __exit__(self, *exc: Any) -> None:
        if _owner(self.path) == os.getpid():
            self.path.unlink(missing_ok=True)


def _owner(path: Path) -> int | None:
    try:
        return int(path.read_text().strip()[:20])
    except (OSError, ValueError):
        return None
