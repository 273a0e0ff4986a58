"""Merging per-worker routing tables and indexes (pure)."""

from __future__ import annotations

from typing import Any

from mlops.providers.engine import view as rv
from mlops.state import models as state


def view(
    gen: int, weights: dict[str, int], rows: list[tuple[str, str, str]], shadow: Any = None
) -> rv.WorkerView:
    routing = {
        "generation": gen,
        "models": {"m": {"generation": gen, "weights": weights, "shadow": shadow}},
    }
    index = [{"name": "m", "version": v, "state": s, "reason": r} for v, s, r in rows]
    return rv.WorkerView(routing, index)


def settings(name: str, version: str) -> dict[str, Any] | None:
    return {"batching": {"max_batch_size": 8}} if version == "1.0.0" else None


def test_agreeing_workers() -> None:
    rows = [("1.0.0", "READY", ""), ("0.9.0", "UNAVAILABLE", "unloaded")]
    shadow = {"version": "1.0.0", "percent": 25.0}
    merged = rv.merge([view(3, {"1.0.0": 100}, rows, shadow)] * 2, 2, settings)
    assert merged == {
        "m": state.RuntimeModel(
            name="m",
            loaded={"1.0.0": "ready"},
            weights={"1.0.0": 100},
            shadow=state.ShadowRoute(version="1.0.0", percent=25),
            generation=3,
            replicas=2,
            replicas_alive=2,
            config={"1.0.0": {"batching": {"max_batch_size": 8}}},
        )
    }


def test_disagreement_is_visible() -> None:
    a = view(5, {"1.0.0": 90, "1.1.0": 10}, [("1.0.0", "READY", ""), ("1.1.0", "READY", "")])
    b = view(4, {"1.0.0": 100}, [("1.0.0", "READY", ""), ("1.1.0", "LOADING", "")])
    c = view(
        5, {"1.0.0": 90, "1.1.0": 10}, [("1.0.0", "READY", ""), ("2.0.0", "UNAVAILABLE", "bad")]
    )
    merged = rv.merge([a, b, None], 4, settings)["m"]
    assert merged.loaded == {"1.0.0": "ready", "1.1.0": "loading"}
    assert merged.generation == 4  # the lagging worker shows
    assert merged.weights == {"1.0.0": 90, "1.1.0": 10}  # the newest table
    assert (merged.replicas, merged.replicas_alive) == (4, 2)
    merged = rv.merge([a, c], 2, settings)["m"]
    assert merged.loaded == {"1.0.0": "ready", "1.1.0": "partial", "2.0.0": "failed"}


def test_zero_weights_are_no_traffic_and_dropped() -> None:
    merged = rv.merge([view(2, {"1.0.0": 100, "1.1.0": 0}, [("1.0.0", "READY", "")])], 1, settings)
    assert merged["m"].weights == {"1.0.0": 100}


def test_no_live_worker_means_no_models() -> None:
    assert rv.merge([None, None], 2, settings) == {}


def test_semver_order() -> None:
    assert sorted(["1.10.0", "1.9.0", "1.9.0-rc.1", "x"], key=rv.semver_key) == [
        "x",
        "1.9.0-rc.1",
        "1.9.0",
        "1.10.0",
    ]
