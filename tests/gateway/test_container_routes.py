"""The container runtime's route table (pure) and its desired-state file (bounds, damage)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops import errors
from mlops.providers import gateway
from mlops.providers.containers import desired
from mlops.providers.containers import runtime as container_runtime


def version(*ports: int, semver_image: str = "r/m@sha256:" + "a" * 64) -> desired.Version:
    return desired.Version(
        image=semver_image,
        sha256="b" * 64,
        replicas=max(len(ports), 1),
        containers=[
            desired.Container(id=f"{port:012x}", port=port, admin_port=port + 1000)
            for port in ports
        ],
    )


def by_prefix(table: list[gateway.Route]) -> dict[str, gateway.Route]:
    return {r.path_prefix: r for r in table}


def test_weights_are_split_among_a_versions_containers_and_shadow_is_mirrored() -> None:
    state = desired.Desired(
        models={
            "m": desired.Model(
                generation=3,
                weights={"1.0.0": 95, "1.1.0": 5},
                shadow=desired.Shadow(version="2.0.0", percent=10),
                versions={
                    "1.0.0": version(5001, 5002),
                    "1.1.0": version(5003),
                    "2.0.0": version(5004),
                },
            )
        }
    )
    table = by_prefix(container_runtime.routes(state))
    model = table["/v2/models/m"]
    weights = {b.url: b.weight for b in model.backends}
    # 95 over two containers, 5 over one: 95:5 between the versions, exactly (in lowest
    # terms: 19 + 19 against 2).
    assert weights == {
        "http://127.0.0.1:5001": 19,
        "http://127.0.0.1:5002": 19,
        "http://127.0.0.1:5003": 2,
    }
    assert model.mirror == "http://127.0.0.1:5004" and model.mirror_percent == 10
    assert [b.url for b in table["/v2/models/m/versions/2.0.0"].backends] == [
        "http://127.0.0.1:5004"
    ]
    assert len(table["/v2/health"].backends) == 4


def test_no_table_routes_to_the_newest_version_and_drained_versions_get_no_model_traffic() -> None:
    fresh = desired.Desired(
        models={"m": desired.Model(versions={"1.0.0": version(5001), "1.10.0": version(5002)})}
    )
    model = by_prefix(container_runtime.routes(fresh))["/v2/models/m"]
    assert [b.url for b in model.backends] == ["http://127.0.0.1:5002"]  # semver, not text

    drained = desired.Desired(
        models={
            "m": desired.Model(
                weights={"1.0.0": 100, "1.1.0": 0},
                versions={"1.0.0": version(5001), "1.1.0": version(5002)},
            )
        }
    )
    table = by_prefix(container_runtime.routes(drained))
    assert [b.url for b in table["/v2/models/m"].backends] == ["http://127.0.0.1:5001"]
    assert "/v2/models/m/versions/1.1.0" in table  # still reachable by version (conformance)


def test_a_version_without_containers_has_no_route() -> None:
    state = desired.Desired(
        models={"m": desired.Model(weights={"1.0.0": 100}, versions={"1.0.0": version()})}
    )
    assert container_runtime.routes(state) == []


def test_the_desired_state_round_trips_and_damage_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "desired.json"
    assert desired.read(path) == desired.Desired()
    state = desired.Desired(
        models={
            "m": desired.Model(
                generation=2, weights={"1.0.0": 100}, versions={"1.0.0": version(5001)}
            )
        }
    )
    desired.write(path, state)
    assert desired.read(path) == state
    for text in (
        "{not json",
        json.dumps({"format": 99, "models": {}}),
        json.dumps({"format": 1, "models": {"m": {"generation": -1}}}),
        json.dumps({"format": 1, "models": {}, "extra": 1}),
        json.dumps(
            {"format": 1, "models": {"m": {"versions": {"1": {"image": "x", "sha256": "no"}}}}}
        ),
    ):
        path.write_text(text)
        with pytest.raises(errors.PermanentError, match="remove it and re-apply") as caught:
            desired.read(path)
        assert "\n" not in str(caught.value)
    path.write_bytes(b" " * (desired.MAX_BYTES + 1))
    with pytest.raises(errors.PermanentError, match="over"):
        desired.read(path)
