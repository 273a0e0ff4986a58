"""Merge what each engine worker reports (routing table + repository index) into one
`RuntimeModel` per model. Pure: the local runtime does the reads.

Workers can disagree for a moment (a change reached some of them, or one restarted). The
merge makes that visible instead of hiding it: a version loaded on only some workers is
`partial`, and the model's generation is the lowest any live worker holds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import semver

from mlops.state import models as state

READY, LOADING, PARTIAL, FAILED = "ready", "loading", "partial", "failed"


@dataclass(frozen=True)
class WorkerView:
    routing: dict[str, Any]  # GET /v2/routing
    index: list[dict[str, str]]  # POST /v2/repository/index
    rates: dict[str, float] = field(default_factory=dict)  # mlops_request_rate by model

    def versions(self, name: str) -> dict[str, str]:
        """semver -> our state name, for versions the worker has assigned (not just on disk)."""
        found: dict[str, str] = {}
        for row in self.index:
            if row.get("name") != name:
                continue
            engine_state, reason = row.get("state"), row.get("reason") or ""
            if engine_state == "READY":
                found[row["version"]] = READY
            elif engine_state == "LOADING":
                found[row["version"]] = LOADING
            elif reason != "unloaded":
                found[row["version"]] = FAILED
        return found

    def table(self, name: str) -> dict[str, Any] | None:
        models = self.routing.get("models") or {}
        table = models.get(name)
        return table if isinstance(table, dict) else None

    def model_names(self) -> set[str]:
        names = set((self.routing.get("models") or {}).keys())
        names.update(r["name"] for r in self.index if r.get("reason") != "unloaded")
        return names


def merge(
    views: Sequence[WorkerView | None],
    declared: int,
    settings_of: Callable[[str, str], dict[str, Any] | None],
) -> dict[str, state.RuntimeModel]:
    """`views[i]` is None when worker i did not answer. `settings_of(name, semver)` gives the
    staged settings.json of a version (batching etc.) for `RuntimeModel.config`."""
    alive = [v for v in views if v is not None]
    names = sorted(set().union(*(v.model_names() for v in alive))) if alive else []
    merged: dict[str, state.RuntimeModel] = {}
    for name in names:
        loaded = _merge_versions([v.versions(name) for v in alive])
        tables = [v.table(name) for v in alive]
        generations = [int(t.get("generation", 0)) if t else 0 for t in tables]
        newest = max(
            (t for t in tables if t), key=lambda t: int(t.get("generation", 0)), default=None
        )
        weights = {
            str(v): int(w) for v, w in ((newest or {}).get("weights") or {}).items() if int(w) > 0
        }
        shadow_raw = (newest or {}).get("shadow")
        shadow = (
            state.ShadowRoute(version=shadow_raw["version"], percent=round(shadow_raw["percent"]))
            if shadow_raw
            else None
        )
        config = {v: settings_of(name, v) or {} for v in sorted(loaded, key=semver_key)}
        merged[name] = state.RuntimeModel(
            name=name,
            loaded=loaded,
            weights=weights,
            shadow=shadow,
            generation=min(generations) if generations else 0,
            replicas=declared,
            replicas_alive=len(alive),
            config=config,
        )
    return merged


RATE_SAMPLE = "mlops_request_rate{"


def rates(metrics_text: str) -> dict[str, float]:
    """`mlops_request_rate{model="..."} VALUE` samples of a worker's /metrics text. Only those
    lines are looked at: the rest (histograms of every version) is most of the text."""
    found: dict[str, float] = {}
    start = metrics_text.find(RATE_SAMPLE)
    while start >= 0:
        end = metrics_text.find("\n", start)
        line = metrics_text[start : end if end >= 0 else len(metrics_text)]
        labels, _, value = line.rpartition("} ")
        model = labels.partition('model="')[2].rstrip('"')
        with contextlib.suppress(ValueError):  # a malformed sample is no rate, not a failure
            found[model] = float(value)
        start = metrics_text.find(RATE_SAMPLE, start + len(RATE_SAMPLE))
    return found


def total_rates(views: Sequence[WorkerView | None]) -> dict[str, float]:
    """Requests/s per model over every worker that answered (each serves its own share)."""
    total: dict[str, float] = {}
    for view in views:
        for model, rate in (view.rates if view is not None else {}).items():
            total[model] = total.get(model, 0.0) + rate
    return total


def _merge_versions(per_worker: list[dict[str, str]]) -> dict[str, str]:
    every = sorted(set().union(*per_worker), key=semver_key) if per_worker else []
    merged: dict[str, str] = {}
    for version in every:
        states = [w.get(version) for w in per_worker]
        if all(s == READY for s in states):
            merged[version] = READY
        elif FAILED in states:
            merged[version] = FAILED
        elif LOADING in states:
            merged[version] = LOADING
        else:
            merged[version] = PARTIAL
    return merged


def semver_key(version: str) -> tuple[int, Any]:
    try:
        return (1, semver.Version.parse(version))
    except ValueError:
        return (0, version)
