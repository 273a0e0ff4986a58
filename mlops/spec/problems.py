"""Problems found in spec files, and the mapping of pydantic errors back to YAML positions."""

from __future__ import annotations

import difflib
import re
import types
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from mlops.spec import safeyaml


@dataclass(frozen=True, order=True)
class Problem:
    """One problem at `file:line:column`; `field` is a dotted path, empty for the whole file."""

    file: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def field_path(path: tuple[str | int, ...]) -> str:
    """`("spec", "rollout", "steps", 2, "weight")` -> `spec.rollout.steps[2].weight`."""
    text = ""
    for part in path:
        if isinstance(part, str) and not part.isprintable():
            part = repr(part)  # a key holding a line break would split the one-line problem
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def from_yaml(file: str, problem: safeyaml.YamlProblem) -> Problem:
    line, column = problem.mark
    return Problem(file, line, column, field_path(problem.path), problem.message)


def from_validation(
    file: str,
    exc: ValidationError,
    positions: safeyaml.Positions,
    model: type[BaseModel],
    prefix: tuple[str | int, ...] = (),
) -> list[Problem]:
    """One Problem per pydantic error, placed at the key or value it is about."""
    found: list[Problem] = []
    for error in exc.errors(include_url=False):
        loc = tuple(part for part in error["loc"] if isinstance(part, int | str))
        kind = error["type"]
        if kind == "extra_forbidden":
            key = str(loc[-1])
            message = f"unknown field {key!r}" + _suggest(key, _field_names(model, loc[:-1]))
            line, column = positions.key((*prefix, *loc))
        elif kind == "missing":
            message = "required field is missing"
            line, column = positions.of((*prefix, *loc[:-1]))
        else:
            message = _message(error)
            line, column = positions.of((*prefix, *loc))
        found.append(Problem(file, line, column, field_path((*prefix, *loc)), message))
    return found


def _message(error: Any) -> str:
    message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    value = error.get("input")
    if error["type"] in ("literal_error", "enum") and isinstance(value, str):
        expected = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
        return f"{value!r} is not allowed; expected one of: {', '.join(expected)}" + _suggest(
            value, expected
        )
    if error["type"] != "value_error" and not isinstance(value, dict | list):
        shown = repr(value)
        message += f" (got {shown[:40] + '...' if len(shown) > 40 else shown})"
    return message


def _suggest(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _field_names(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """Field names of the model reached by walking `loc` from `model` (empty if none)."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            args = get_args(current)
            current = args[0] if get_origin(current) is list and args else None
        elif isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(part)
            current = info.annotation if info else None
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """Strip `Annotated[...]` and `X | None` down to X."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            rest = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(rest) != 1:
                return annotation
            annotation = rest[0]
        else:
            return annotation
