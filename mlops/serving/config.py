"""Engine settings shared by the command line, the supervisor and each worker process."""

from __future__ import annotations

import dataclasses
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from mlops import errors

MAX_TOKEN_BYTES = 4096


@dataclass(frozen=True, slots=True)
class ServeConfig:
    repository: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8480
    replicas: int = 1
    # Given: worker i listens on admin_port + i. None (the default): each worker's admin port
    # is chosen by the kernel when it binds (port 0) and published in STATE_DIR/worker-<i>.json,
    # so no port picked in advance can be taken by another program before the worker binds it.
    admin_port: int | None = None
    # Workers run under a supervisor even for one replica, so the count can change live
    # (SIGHUP after writing STATE_DIR/replicas.json; see docs/engine.md). The local target
    # always starts the engine this way.
    supervise: bool = False
    # The admin address (load, unload, routing) is loopback whatever `host` is: a client of
    # the inference port can never reach it from another machine.
    admin_host: str = "127.0.0.1"
    # A file holding the admin token (mode 0600); None = the admin address needs no token.
    # The path, never the token, travels in this config (it is on the workers' command line).
    admin_token_file: Path | None = None
    state_dir: Path = Path(".mlops/engine")
    max_body_bytes: int = 64 << 20
    # Connection limits per worker (mlops/serving/protocol.py; docs/engine.md).
    max_head_bytes: int = 16 << 10  # request line + headers
    max_headers: int = 100
    head_timeout_s: float = 10.0  # from a head's first byte to its end
    body_timeout_s: float = 30.0  # the longest pause while a body arrives
    keepalive_timeout_s: float = 5.0  # silence before an idle connection is closed
    max_connections: int = 10000  # on the data port; lowered to fit the fd limit
    intra_op_threads: int = 1
    inference_threads: int = 0  # 0 = one per CPU core
    load_all: bool = True  # load every version found in the repository at start-up
    log_level: str = "warning"
    # Live input sampling for drift (mlops/serving/sampling.py): the share of requests
    # sampled, and per version the rows kept and their memory bound. Never written to disk.
    sample_rate: float = 0.05
    sample_rows: int = 1024
    sample_max_bytes: int = 8 << 20

    @property
    def first_admin_port(self) -> int:
        """Worker 0's admin port; 0 when every worker's is chosen by the kernel."""
        return self.admin_port if self.admin_port is not None else 0

    def admin_port_of(self, index: int) -> int:
        """The admin port worker `index` binds: admin_port + index, or 0 (kernel-chosen)."""
        return self.admin_port + index if self.admin_port is not None else 0

    @property
    def threads(self) -> int:
        return self.inference_threads or os.cpu_count() or 1

    def to_json(self) -> bytes:
        doc = dataclasses.asdict(self)
        doc["repository"] = None if self.repository is None else str(self.repository)
        doc["state_dir"] = str(self.state_dir)
        doc["admin_token_file"] = (
            None if self.admin_token_file is None else str(self.admin_token_file)
        )
        return orjson.dumps(doc)

    @classmethod
    def from_json(cls, raw: str | bytes) -> ServeConfig:
        doc: dict[str, Any] = orjson.loads(raw)
        repository = doc.pop("repository")
        state_dir = doc.pop("state_dir")
        token_file = doc.pop("admin_token_file", None)
        return cls(
            repository=None if repository is None else Path(repository),
            state_dir=Path(state_dir),
            admin_token_file=None if token_file is None else Path(token_file),
            **doc,
        )


def read_admin_token(path: Path) -> bytes:
    """The admin token in `path`; refuses a file others can read (like ssh with a key)."""
    try:
        info = path.stat()
        token = path.read_bytes()[: MAX_TOKEN_BYTES + 1].strip()
    except OSError as exc:
        raise errors.UsageError(
            f"cannot read the admin token file {path}: {exc.strerror}"
        ) from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise errors.UsageError(
            f"admin token file {path} is accessible by other users "
            f"(mode {stat.S_IMODE(info.st_mode):o}); chmod 600 it"
        )
    if not token or len(token) > MAX_TOKEN_BYTES or not token.isascii():
        raise errors.UsageError(f"admin token file {path} must hold one ASCII token line")
    return token
