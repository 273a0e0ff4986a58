"""Engine settings shared by the command line, the supervisor and each worker process."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class ServeConfig:
    repository: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8480
    replicas: int = 1
    admin_port: int | None = None  # default: port + 1000; worker i listens on admin_port + i
    state_dir: Path = Path(".mlops/engine")
    max_body_bytes: int = 64 << 20
    intra_op_threads: int = 1
    inference_threads: int = 0  # 0 = one per CPU core
    load_all: bool = True  # load every version found in the repository at start-up
    log_level: str = "warning"

    @property
    def first_admin_port(self) -> int:
        return self.admin_port if self.admin_port is not None else self.port + 1000

    @property
    def threads(self) -> int:
        return self.inference_threads or os.cpu_count() or 1

    def to_json(self) -> bytes:
        doc = dataclasses.asdict(self)
        doc["repository"] = None if self.repository is None else str(self.repository)
        doc["state_dir"] = str(self.state_dir)
        return orjson.dumps(doc)

    @classmethod
    def from_json(cls, raw: str | bytes) -> ServeConfig:
        doc: dict[str, Any] = orjson.loads(raw)
        repository = doc.pop("repository")
        state_dir = doc.pop("state_dir")
        return cls(
            repository=None if repository is None else Path(repository),
            state_dir=Path(state_dir),
            **doc,
        )
