"""What the container runtime has been told, kept in `.mlops/containers/desired.json`: per
model its routing table (weights, shadow, generation) and per loaded version the image it
runs, its settings, the replica count and the containers started for it.

The file is what the gateway's route table is rendered from, so a restarted gateway routes as
before; it is written with `fsio.atomic_write` (a crash leaves the old or the new file, whole)
and read with bounds (a damaged or hostile file is refused in one line, never half-used).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops import errors, fsio

FORMAT = 1
MAX_BYTES = 1 << 20
MAX_MODELS = 256
MAX_VERSIONS = 16
MAX_REPLICAS = 8
_ID = re.compile(r"^[0-9a-f]{12,64}$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Container(_Frozen):
    id: str = Field(pattern=_ID.pattern)
    port: int = Field(ge=1, le=65535)  # the engine's inference port on 127.0.0.1
    admin_port: int = Field(ge=1, le=65535)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"


class Version(_Frozen):
    image: str = Field(max_length=400)  # REPOSITORY@sha256:...
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")  # the artifact's
    settings: dict[str, Any] = Field(default_factory=dict)
    replicas: int = Field(default=1, ge=1, le=MAX_REPLICAS)
    containers: list[Container] = Field(default_factory=list, max_length=MAX_REPLICAS)


class Shadow(_Frozen):
    version: str = Field(max_length=128)
    percent: int = Field(ge=0, le=100)


class Model(_Frozen):
    generation: int = Field(default=0, ge=0)
    weights: dict[str, int] = Field(default_factory=dict, max_length=MAX_VERSIONS)
    shadow: Shadow | None = None
    versions: dict[str, Version] = Field(default_factory=dict, max_length=MAX_VERSIONS)


class Desired(_Frozen):
    format: int = FORMAT
    models: dict[str, Model] = Field(default_factory=dict, max_length=MAX_MODELS)


def read(path: Path) -> Desired:
    """The desired state; empty when the file does not exist."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return Desired()
    except OSError as exc:
        raise errors.PermanentError(f"{path} is unreadable: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise errors.PermanentError(f"{path} is over {MAX_BYTES} bytes: remove it and re-apply")
    try:
        doc = json.loads(raw)
        if isinstance(doc, dict) and doc.get("format") != FORMAT:
            raise ValueError(f"format {doc.get('format')!r} is not {FORMAT}")
        return Desired.model_validate(doc)
    except (ValueError, ValidationError) as exc:
        first = str(exc).splitlines()[0][:200]
        raise errors.PermanentError(
            f"{path} is not a container runtime state ({first}): remove it and re-apply"
        ) from None


def write(path: Path, desired: Desired) -> None:
    fsio.atomic_write(path, desired.model_dump_json(indent=2))
