"""Values produced by the safe YAML reader: documents, where their fields came from, problems.

Kept apart from the reader (`safeyaml`) so that the reader module holds only the parsing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FieldPath = tuple[str | int, ...]
Mark = tuple[int, int]  # 1-based (line, column)


@dataclass(frozen=True)
class YamlProblem:
    message: str
    mark: Mark
    path: FieldPath = ()


@dataclass(frozen=True)
class Positions:
    """Where each field path's key and value start; containers are remembered by key."""

    values: Mapping[FieldPath, Mark]
    keys: Mapping[FieldPath, Mark]
    containers: frozenset[FieldPath]

    def of(self, path: FieldPath) -> Mark:
        """Best position for `path`: the key of a mapping/list, the value of a scalar.

        Missing paths (e.g. a required field that is absent) fall back to the nearest parent.
        """
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            if prefix in self.containers and prefix in self.keys:
                return self.keys[prefix]
            if prefix in self.values:
                return self.values[prefix]
        return (1, 1)

    def key(self, path: FieldPath) -> Mark:
        return self.keys.get(path) or self.of(path)


@dataclass(frozen=True)
class Document:
    data: Any
    positions: Positions
    start: Mark


@dataclass
class ReadResult:
    documents: list[Document] = field(default_factory=list)
    problems: list[YamlProblem] = field(default_factory=list)
