"""Weighted routing and shadow mirroring between the live versions of each model.

The controller declares a table per model (weights, shadow, generation). The router resolves
it against the repository into an immutable `Route` and swaps the whole route in one
assignment, so a request sees either the old table or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
import semver

from mlops import fsio
from mlops.serving import schema
from mlops.serving.errors import Conflict, NotFound
from mlops.serving.version import ModelVersion

log = logging.getLogger("mlops.serving")


@dataclass(frozen=True, slots=True)
class Table:
    generation: int
    weights: dict[str, int]
    shadow: tuple[str, float] | None  # (version, percent)

    def describe(self) -> dict[str, Any]:
        shadow = (
            None if self.shadow is None else {"version": self.shadow[0], "percent": self.shadow[1]}
        )
        return {"generation": self.generation, "weights": dict(self.weights), "shadow": shadow}


class Route:
    """A resolved table: direct references to live versions plus cumulative weights."""

    __slots__ = ("_cumulative", "_total", "_versions", "shadow", "shadow_rate")

    def __init__(
        self, weighted: list[tuple[ModelVersion, int]], shadow: ModelVersion | None, percent: float
    ) -> None:
        self._versions = [v for v, _ in weighted]
        self._cumulative: list[int] = []
        total = 0
        for _, w in weighted:
            total += w
            self._cumulative.append(total)
        self._total = total
        self.shadow = shadow
        self.shadow_rate = percent / 100.0

    def choose(self) -> ModelVersion:
        if len(self._versions) == 1:
            return self._versions[0]
        return self._versions[bisect_right(self._cumulative, random.random() * self._total)]

    def mirror(self, served: ModelVersion) -> ModelVersion | None:
        """The shadow version to mirror this request to, if any."""
        shadow = self.shadow
        if shadow is None or shadow is served or random.random() >= self.shadow_rate:
            return None
        return shadow


class Router:
    def __init__(
        self, live: dict[str, dict[str, ModelVersion]], persist: Path | None = None
    ) -> None:
        self._live = live  # the repository's view, shared by reference
        self.tables: dict[str, Table] = {}
        # Kept after a model is unloaded so its generation can never go backwards.
        self._generations: dict[str, int] = {}
        self.generation = 0
        self.routes: dict[str, Route] = {}
        # A restarted worker must come back with the controller's tables, not the default
        # "newest version takes all", or a canary could briefly get more than its planned weight.
        self._persist = persist
        # Why the persisted tables could not be restored (a corrupt file), until the
        # controller puts a table again; reported by /v2/health/ready and GET /v2/routing.
        self.problem: str | None = None
        if persist is not None:
            self._restore(persist)

    def _restore(self, path: Path) -> None:
        """The tables saved by the last run; a file that does not validate is an error that
        names it (the worker still starts, with no tables, and says so)."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            self._corrupt(path, exc.strerror or str(exc))
            return
        try:
            doc = schema.PersistedRouting.model_validate_json(raw)
        except pydantic.ValidationError as exc:
            self._corrupt(path, schema.describe(exc))
            return
        for name, entry in doc.tables.items():
            shadow = entry.shadow
            self.tables[name] = Table(
                entry.generation,
                dict(entry.weights),
                None if shadow is None else (shadow.version, shadow.percent),
            )
        self._generations = dict(doc.generations)
        self.generation = max([doc.generation, *self._generations.values()])

    def _corrupt(self, path: Path, reason: str) -> None:
        self.problem = (
            f"routing file {path} is corrupt ({reason}); serving default routing until the "
            "controller sets the tables again"
        )
        log.error("%s", self.problem)

    def _save(self) -> None:
        if self._persist is None:
            return
        doc = {
            "generation": self.generation,
            "generations": self._generations,
            "tables": {name: table.describe() for name, table in self.tables.items()},
        }
        try:
            # What the next start reads back must pass the same schema: never write otherwise.
            schema.PersistedRouting.model_validate(doc)
        except pydantic.ValidationError as exc:
            log.error("routing not saved to %s: %s", self._persist, schema.describe(exc))
            return
        with contextlib.suppress(OSError):
            # Every worker saves here: a crash leaves the old or the new table, whole.
            fsio.atomic_write(self._persist, json.dumps(doc))

    def rebuild(self) -> None:
        routes: dict[str, Route] = {}
        for name, versions in self._live.items():
            if not versions:
                continue
            table = self.tables.get(name)
            weighted = [
                (versions[v], w)
                for v, w in (table.weights.items() if table else ())
                if w > 0 and v in versions
            ]
            if not weighted:
                # No declared weights: the newest version takes all traffic.
                weighted = [(versions[max(versions, key=semver_key)], 1)]
            shadow, percent = None, 0.0
            if table and table.shadow:
                shadow = versions.get(table.shadow[0])
                percent = table.shadow[1]
            routes[name] = Route(weighted, shadow, percent)
        self.routes = routes

    def update(self, name: str, body: Any) -> int:
        """Apply a PUT /v2/routing/{name} body; returns the generation now in force."""
        parsed = schema.parse(schema.RoutingBody, body, "routing body")
        versions = self._live.get(name)
        if not versions:
            raise NotFound(f"unknown model '{name}'")
        weights = dict(parsed.weights)
        for v, w in weights.items():
            if w > 0 and v not in versions:
                raise Conflict(f"model '{name}' has no loaded version '{v}'")
        shadow = None if parsed.shadow is None else (parsed.shadow.version, parsed.shadow.percent)
        if shadow is not None and shadow[0] not in versions:
            raise Conflict(f"shadow version '{shadow[0]}' of '{name}' is not loaded")
        current = self._generations.get(name, 0)
        generation = parsed.generation
        if generation is None:
            generation = max(current, self.generation) + 1
            if generation > schema.MAX_GENERATION:
                raise Conflict(f"generations of '{name}' are exhausted; send one explicitly")
        table = Table(generation, weights, shadow)
        old = self.tables.get(name)
        if generation < current or (
            generation == current
            and old is not None
            and (old.weights, old.shadow) != (weights, shadow)
        ):
            raise Conflict(f"generation {generation} is behind the current {current} of '{name}'")
        self.tables[name] = table
        self._generations[name] = generation
        self.generation = max(self.generation, generation)
        self.rebuild()
        self._save()
        self.problem = None  # the controller is setting tables again: the file is valid now
        return generation

    def check_unload(self, name: str, version: str | None) -> None:
        table = self.tables.get(name)
        if table is None or version is None:
            return
        if table.weights.get(version, 0) > 0:
            raise Conflict(f"{name}@{version} still has weight; set it to 0 before unloading")
        if table.shadow and table.shadow[0] == version:
            raise Conflict(f"{name}@{version} is the shadow target; clear the shadow first")

    def missing(self) -> list[tuple[str, str]]:
        """(model, version) pairs a table sends traffic or mirrors to that are not loaded."""
        gaps: list[tuple[str, str]] = []
        for name, table in self.tables.items():
            live = self._live.get(name, {})
            wanted = [v for v, w in table.weights.items() if w > 0]
            if table.shadow is not None and table.shadow[1] > 0:
                wanted.append(table.shadow[0])
            gaps.extend((name, v) for v in wanted if v not in live)
        return sorted(gaps)

    def adopt(self, tables: dict[str, Table]) -> None:
        """Start from the controller's tables (mlops/serving/desired.py) instead of this
        worker's own: they are the last ones confirmed on every worker. Generations never go
        backwards, so a table the controller sends next is never refused as stale."""
        for name, table in tables.items():
            self._generations[name] = max(self._generations.get(name, 0), table.generation)
            self.generation = max(self.generation, table.generation)
        self.tables = dict(tables)
        self.problem = None  # a damaged routing file no longer matters
        self.rebuild()
        self._save()

    def forget(self, name: str) -> None:
        """Drop the table of a model whose last version was unloaded."""
        if name not in self._live:
            self.tables.pop(name, None)
            self._save()

    def describe(self) -> dict[str, Any]:
        models: dict[str, Any] = {}
        for name in sorted(set(self._live) | set(self.tables)):
            table = self.tables.get(name)
            if table is not None:
                models[name] = table.describe()
            else:
                route = self._generations.get(name, 0)
                models[name] = {"generation": route, "weights": {}, "shadow": None}
        doc: dict[str, Any] = {"generation": self.generation, "models": models}
        if self.problem is not None:
            doc["error"] = self.problem
        return doc


def semver_key(version: str) -> tuple[int, Any]:
    """Semver order by the `semver` library, as the controller orders them
    (`providers/engine/view.semver_key`): 1.0.0-rc.9 < 1.0.0-rc.10 < 1.0.0. A name that is
    not a semantic version sorts before every one that is, by its text."""
    try:
        return (1, semver.Version.parse(version))
    except ValueError:
        return (0, version)
