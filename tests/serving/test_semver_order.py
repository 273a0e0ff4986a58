"""One semver ordering: the engine's router orders versions exactly as the controller does."""

from __future__ import annotations

from typing import Any, cast

from mlops.providers.engine import view as runtime_view
from mlops.serving.router import Router, semver_key
from mlops.serving.version import ModelVersion

VERSIONS = [
    "1.0.0",
    "1.0.0-rc.10",
    "1.0.0-rc.9",
    "1.0.0-rc.2",
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "0.9.12",
    "1.10.0",
    "1.9.0",
    "1.0.0+build.5",
    "2.0.0-beta.11",
    "2.0.0-beta.3",
    "latest",
]


class _Version:
    def __init__(self, version: str) -> None:
        self.version = version


def test_rc10_sorts_after_rc9() -> None:
    assert sorted(["1.0.0-rc.10", "1.0.0-rc.9"], key=semver_key) == ["1.0.0-rc.9", "1.0.0-rc.10"]
    assert max(["1.0.0-rc.9", "1.0.0-rc.10"], key=semver_key) == "1.0.0-rc.10"


def test_engine_and_controller_agree_on_every_pair() -> None:
    assert sorted(VERSIONS, key=semver_key) == sorted(VERSIONS, key=runtime_view.semver_key)


def test_default_route_sends_traffic_to_rc10_not_rc9() -> None:
    live: dict[str, dict[str, Any]] = {"m": {v: _Version(v) for v in ("1.0.0-rc.9", "1.0.0-rc.10")}}
    router = Router(cast(dict[str, dict[str, ModelVersion]], live))
    router.rebuild()
    assert {router.routes["m"].choose().version for _ in range(20)} == {"1.0.0-rc.10"}
