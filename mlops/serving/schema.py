"""Admin request bodies (routing, load, unload) and the persisted routing file, as pydantic
models with bounded fields: nothing reaches the router, the repository or the disk before it
passed one of these.

Bounds: generations are below 2**53 (exact in every JSON reader, including JavaScript's),
weights at most 1,000,000 each, at most 64 versions per table, names as the repository
allows them (path-safe, at most 128 characters).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

import pydantic
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from mlops.serving.errors import BadRequest

MAX_GENERATION = 2**53 - 1
MAX_WEIGHT = 1_000_000
MAX_VERSIONS = 64  # per routing table
MAX_MODELS = 10_000  # tables in one persisted routing file

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


def check_name(text: str) -> str:
    """A model name or version: it becomes a path segment, so nothing that could climb out."""
    if not _NAME.match(text) or ".." in text:
        raise ValueError(f"invalid model name or version {text[:140]!r}")
    return text


Name = Annotated[str, AfterValidator(check_name)]
Generation = Annotated[int, Field(strict=True, ge=0, le=MAX_GENERATION)]
Weight = Annotated[int, Field(strict=True, ge=0, le=MAX_WEIGHT)]
Percent = Annotated[float, Field(strict=True, ge=0, le=100, allow_inf_nan=False)]


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Shadow(_Body):
    version: Name
    percent: Percent = 100.0


class RoutingBody(_Body):
    """PUT /v2/routing/{name}."""

    weights: dict[Name, Weight] = Field(default_factory=dict, max_length=MAX_VERSIONS)
    shadow: Shadow | None = None
    generation: Generation | None = None

    @model_validator(mode="after")
    def _positive(self) -> RoutingBody:
        if self.weights and not any(self.weights.values()):
            raise ValueError("at least one weight must be positive")
        return self


class RepositoryParameters(_Body):
    version: Name | None = None
    settings: dict[str, Any] | None = None
    # load only: the model file's expected sha256 (lower-case hex)
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None


class RepositoryBody(_Body):
    """POST /v2/repository/models/{name}/load|unload."""

    parameters: RepositoryParameters = RepositoryParameters()


class PersistedTable(_Body):
    generation: Generation
    weights: dict[Name, Weight] = Field(max_length=MAX_VERSIONS)
    shadow: Shadow | None = None


class PersistedRouting(_Body):
    """A worker's routing-<i>.json, read back at start-up."""

    generation: Generation = 0
    generations: dict[Name, Generation] = Field(default_factory=dict, max_length=MAX_MODELS)
    tables: dict[Name, PersistedTable] = Field(default_factory=dict, max_length=MAX_MODELS)


Model = TypeVar("Model", bound=BaseModel)


def parse(model: type[Model], raw: Any, what: str) -> Model:
    """`raw` validated as `model`; a BadRequest naming the first problems in one line."""
    try:
        return model.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise BadRequest(f"{what}: {describe(exc)}") from None


def describe(exc: pydantic.ValidationError, limit: int = 3) -> str:
    """The first few problems of a validation error, in one line."""
    parts = []
    for error in exc.errors()[:limit]:
        where = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)[:500]
