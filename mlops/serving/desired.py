"""The controller's desired state: what a starting worker loads and how it routes.

The local target keeps `desired.json` in the engine's state directory (docs/engine.md). It
holds, per model, the versions to load and the routing table that the controller last
confirmed on every worker, or that a rollback decided (a rollback writes it before it
touches any worker, so a restart can never bring back a version it took out). When the file
exists it is the whole truth for a starting worker: the worker's own `routing-N.json` and
`loaded-N.json` only serve an engine run without a controller (`mlops serve`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops import errors
from mlops.serving import schema
from mlops.serving.router import Table

FILE = "desired.json"
FORMAT = 1
MAX_BYTES = 4 << 20


class ModelState(BaseModel):
    """One model: the versions to load and its routing table (bounds as in schema.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    loaded: list[schema.Name] = Field(default_factory=list, max_length=schema.MAX_VERSIONS)
    weights: dict[schema.Name, schema.Weight] = Field(
        default_factory=dict, max_length=schema.MAX_VERSIONS
    )
    shadow: schema.Shadow | None = None
    generation: schema.Generation = 0

    def table(self) -> Table:
        shadow = None if self.shadow is None else (self.shadow.version, self.shadow.percent)
        return Table(self.generation, dict(self.weights), shadow)


class DesiredState(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: int = Field(default=FORMAT, ge=FORMAT, le=FORMAT)
    models: dict[schema.Name, ModelState] = Field(
        default_factory=dict, max_length=schema.MAX_MODELS
    )

    def tables(self) -> dict[str, Table]:
        return {name: model.table() for name, model in self.models.items()}

    def loaded(self) -> list[tuple[str, str]]:
        return [(name, v) for name, model in sorted(self.models.items()) for v in model.loaded]


def read(path: Path) -> DesiredState | None:
    """The desired state in `path`, None when there is none. A damaged file is an error that
    names it: starting from a guess could serve a version the controller took out."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise errors.UsageError(f"cannot read the desired state {path}: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise errors.UsageError(f"desired state {path} is larger than {MAX_BYTES} bytes")
    try:
        return DesiredState.model_validate_json(raw)
    except ValidationError as exc:
        raise errors.UsageError(
            f"desired state {path} is damaged ({schema.describe(exc)}); re-apply after "
            "removing it, or restore it"
        ) from None
