"""Weighted routing, generations and shadow selection, pinned through the router directly."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any, cast

import pytest

from mlops.serving.errors import BadRequest, Conflict
from mlops.serving.router import Router, semver_key
from mlops.serving.version import ModelVersion


class _Version:
    def __init__(self, version: str) -> None:
        self.version = version


def _router(*versions: str) -> Router:
    live: dict[str, dict[str, Any]] = {"m": {v: _Version(v) for v in versions}}
    router = Router(cast(dict[str, dict[str, ModelVersion]], live))
    router.rebuild()
    return router


def _split(router: Router, n: int = 10_000) -> Counter[str]:
    route = router.routes["m"]
    return Counter(route.choose().version for _ in range(n))


def test_without_weights_the_newest_version_takes_all_traffic() -> None:
    router = _router("1.9.0", "1.10.0", "1.10.0-rc1")
    assert _split(router, 100) == {"1.10.0": 100}


@pytest.mark.parametrize("weights", [{"1.0.0": 95, "1.1.0": 5}, {"1.0.0": 50, "1.1.0": 50}])
def test_observed_split_is_within_two_points_over_10000_requests(weights: dict[str, int]) -> None:
    random.seed(7)
    router = _router("1.0.0", "1.1.0")
    router.update("m", {"weights": weights})
    seen = _split(router)
    total = sum(weights.values())
    for version, weight in weights.items():
        assert abs(100 * seen[version] / 10_000 - 100 * weight / total) <= 2


def test_weight_changes_swap_the_whole_route_at_once() -> None:
    router = _router("1.0.0", "1.1.0")
    router.update("m", {"weights": {"1.0.0": 100}})
    before = router.routes["m"]
    router.update("m", {"weights": {"1.1.0": 100}})
    assert router.routes["m"] is not before
    assert _split(router, 50) == {"1.1.0": 50}
    assert _split_of(before) == {"1.0.0": 50}


def _split_of(route: Any) -> Counter[str]:
    return Counter(route.choose().version for _ in range(50))


def test_generation_is_chosen_by_the_controller_and_never_goes_back() -> None:
    router = _router("1.0.0", "1.1.0")
    assert router.update("m", {"weights": {"1.0.0": 1}, "generation": 7}) == 7
    assert router.update("m", {"weights": {"1.0.0": 1}, "generation": 7}) == 7  # retry
    with pytest.raises(Conflict):
        router.update("m", {"weights": {"1.1.0": 1}, "generation": 7})
    with pytest.raises(Conflict):
        router.update("m", {"weights": {"1.1.0": 1}, "generation": 3})
    assert router.update("m", {"weights": {"1.1.0": 1}}) == 8
    assert router.describe()["generation"] == 8
    assert router.describe()["models"]["m"]["weights"] == {"1.1.0": 1}


def test_bad_tables_are_refused() -> None:
    router = _router("1.0.0")
    with pytest.raises(Conflict):
        router.update("m", {"weights": {"9.9.9": 10}})
    with pytest.raises(BadRequest):
        router.update("m", {"weights": {"1.0.0": -1}})
    with pytest.raises(BadRequest):
        router.update("m", {"weights": {"1.0.0": 0}})
    with pytest.raises(BadRequest):
        router.update(
            "m", {"weights": {"1.0.0": 1}, "shadow": {"version": "1.0.0", "percent": 101}}
        )


def test_unloading_a_version_with_weight_or_shadow_is_a_conflict() -> None:
    router = _router("1.0.0", "1.1.0")
    router.update("m", {"weights": {"1.0.0": 100, "1.1.0": 0}, "shadow": {"version": "1.1.0"}})
    with pytest.raises(Conflict):
        router.check_unload("m", "1.0.0")
    with pytest.raises(Conflict):
        router.check_unload("m", "1.1.0")
    router.update("m", {"weights": {"1.0.0": 100}, "shadow": None})
    router.check_unload("m", "1.1.0")


def test_shadow_percent_selects_that_share_and_never_the_served_version() -> None:
    random.seed(3)
    router = _router("1.0.0", "1.1.0")
    router.update("m", {"weights": {"1.0.0": 1}, "shadow": {"version": "1.1.0", "percent": 25}})
    route = router.routes["m"]
    served = route.choose()
    mirrored = sum(route.mirror(served) is not None for _ in range(10_000))
    assert 2300 <= mirrored <= 2700
    assert route.mirror(cast(ModelVersion, route.shadow)) is None


def test_semver_ordering() -> None:
    assert sorted(["1.10.0", "1.9.0", "1.10.0-rc1", "0.1.0"], key=semver_key) == [
        "0.1.0",
        "1.9.0",
        "1.10.0-rc1",
        "1.10.0",
    ]


def test_a_restarted_worker_restores_the_controllers_tables(tmp_path: Path) -> None:
    # Without the saved table the restarted worker would send all traffic to the newest
    # (canary) version: more than the planned weight.
    live: dict[str, dict[str, Any]] = {"m": {v: _Version(v) for v in ("1.0.0", "1.1.0")}}
    typed = cast(dict[str, dict[str, ModelVersion]], live)
    path = tmp_path / "routing-0.json"
    first = Router(typed, path)
    first.update("m", {"weights": {"1.0.0": 100, "1.1.0": 0}, "generation": 7})

    restarted = Router(typed, path)
    restarted.rebuild()
    assert _split_of(restarted.routes["m"]) == {"1.0.0": 50}
    assert restarted.describe()["models"]["m"]["generation"] == 7
    with pytest.raises(Conflict):
        restarted.update("m", {"weights": {"1.1.0": 100}, "generation": 6})
