"""Admin bodies are validated with bounded fields before anything changes or is saved; a corrupt
persisted routing file is an error that names it, not a crash loop nor a silent reset."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlops.serving import schema
from mlops.serving.config import ServeConfig
from tests.serving import fixtures
from tests.serving.conftest import EngineThread

U64_MAX = 18446744073709551615


def _repo(root: Path) -> Path:
    repo = root / "repo"
    for version, seed in (("1.0.0", 0), ("1.1.0", 1)):
        fixtures.write_version(
            repo, "m", version, fixtures.classifier_bytes(seed), fixtures.classifier_settings()
        )
    return repo


class _Worker:
    """An in-process engine with a persisted routing file, restartable on the same state."""

    def __init__(self, root: Path) -> None:
        self.repo = _repo(root)
        self.state = root / "state"
        self.state.mkdir(exist_ok=True)
        self.routing_file = self.state / "routing-0.json"
        self.server: EngineThread | None = None

    def start(self) -> EngineThread:
        config = ServeConfig(repository=self.repo, state_dir=self.state)
        self.server = EngineThread(config, routing_file=self.routing_file)
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[_Worker]:
    w = _Worker(tmp_path)
    yield w
    w.stop()


def _admin(server: EngineThread) -> httpx.Client:
    return httpx.Client(base_url=server.admin_url, timeout=30)


def test_u64_generation_is_refused_and_routing_keeps_working(worker: _Worker) -> None:
    server = worker.start()
    with _admin(server) as admin:
        good = {"weights": {"1.0.0": 100}, "shadow": None, "generation": 5}
        assert admin.put("/v2/routing/m", json=good).status_code == 200
        saved = worker.routing_file.read_bytes()
        bad = {"weights": {"1.0.0": 100}, "shadow": None, "generation": U64_MAX}
        reply = admin.put("/v2/routing/m", json=bad)
        assert reply.status_code == 400
        assert reply.json()["error"].startswith("routing body: generation: ")
        assert worker.routing_file.read_bytes() == saved  # nothing persisted
        table = admin.get("/v2/routing")
        assert table.status_code == 200 and table.json()["generation"] == 5
        # The controller's next table still goes through.
        nxt = {"weights": {"1.0.0": 90, "1.1.0": 10}, "generation": 6}
        assert admin.put("/v2/routing/m", json=nxt).json() == {"generation": 6}
    worker.stop()
    server = worker.start()  # and a restart reads back the valid table
    with _admin(server) as admin:
        assert admin.get("/v2/routing").json()["models"]["m"]["weights"] == {
            "1.0.0": 90,
            "1.1.0": 10,
        }
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"weights": {"1.0.0": 1}, "generation": 2**53}, "generation"),
        ({"weights": {"1.0.0": 1}, "generation": -1}, "generation"),
        ({"weights": {"1.0.0": 1}, "generation": True}, "generation"),
        ({"weights": {"1.0.0": 1}, "generation": 7.0}, "generation"),
        ({"weights": {"1.0.0": 1}, "generation": "7"}, "generation"),
        ({"weights": {"1.0.0": schema.MAX_WEIGHT + 1}}, "weights.1.0.0"),
        ({"weights": {"1.0.0": 1.5}}, "weights.1.0.0"),
        ({"weights": {"1.0.0": True}}, "weights.1.0.0"),
        ({"weights": {f"1.0.{i}": 1 for i in range(schema.MAX_VERSIONS + 1)}}, "at most 64"),
        ({"weights": {"../../etc": 1}}, "invalid model name or version"),
        ({"weights": {"x" * 200: 1}}, "invalid model name or version"),
        ({"weights": {"1.0.0": 0}}, "at least one weight must be positive"),
        ({"weights": [1]}, "weights"),
        ({"weights": {"1.0.0": 1}, "shadow": {"version": "1.1.0", "percent": 101}}, "percent"),
        ({"weights": {"1.0.0": 1}, "shadow": {"version": "1.1.0", "percent": "50"}}, "percent"),
        ({"weights": {"1.0.0": 1}, "shadow": {"version": "1.1.0", "percent": True}}, "percent"),
        ({"weights": {"1.0.0": 1}, "shadow": {"version": "1.1.0", "extra": 1}}, "extra"),
        ({"weights": {"1.0.0": 1}, "shadow": "1.1.0"}, "shadow"),
        ({"weights": {"1.0.0": 1}, "weight": 5}, "weight: Extra inputs"),
        ([{"weights": {"1.0.0": 1}}], "valid dictionary"),
    ],
)
def test_bad_routing_bodies_are_400_and_change_nothing(
    engine: EngineThread, admin: httpx.Client, body: Any, complaint: str
) -> None:
    before = admin.get("/v2/routing").json()
    reply = admin.put("/v2/routing/clf", json=body)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert complaint in error and "\n" not in error and len(error) <= 520
    assert admin.get("/v2/routing").json() == before


def test_largest_generation_is_accepted(worker: _Worker) -> None:
    server = worker.start()
    with _admin(server) as admin:
        top = {"weights": {"1.0.0": 1}, "generation": schema.MAX_GENERATION}
        assert admin.put("/v2/routing/m", json=top).json() == {"generation": schema.MAX_GENERATION}
        # No room for an implicit next generation: a clear conflict, not an overflow.
        reply = admin.put("/v2/routing/m", json={"weights": {"1.1.0": 1}})
        assert reply.status_code == 409 and "exhausted" in reply.json()["error"]
        assert admin.get("/v2/routing").status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "complaint"),
    [
        ("/v2/repository/models/clf/load", {"parameters": {"version": 5}}, "parameters.version"),
        ("/v2/repository/models/clf/load", {"parameters": {"version": "../x"}}, "invalid model"),
        ("/v2/repository/models/clf/load", {"parameters": {"settings": []}}, "settings"),
        ("/v2/repository/models/clf/load", {"parameters": {"config": "{}"}}, "config"),
        ("/v2/repository/models/clf/load", {"parameters": []}, "parameters"),
        ("/v2/repository/models/clf/unload", {"params": {}}, "params"),
        ("/v2/repository/models/clf/unload", [], "valid dictionary"),
        ("/v2/repository/models/a..b/unload", {}, "invalid model name"),
    ],
)
def test_bad_repository_bodies_are_400_and_change_nothing(
    admin: httpx.Client, path: str, body: Any, complaint: str
) -> None:
    before = admin.post("/v2/repository/index", json={}).json()
    reply = admin.post(path, json=body)
    assert reply.status_code == 400, reply.text
    assert complaint in reply.json()["error"]
    assert admin.post("/v2/repository/index", json={}).json() == before


@pytest.mark.parametrize(
    "content",
    [
        json.dumps({"generation": U64_MAX, "generations": {"m": U64_MAX}, "tables": {}}),
        json.dumps(
            {
                "generation": 3,
                "generations": {"m": 3},
                "tables": {"m": {"generation": 3, "weights": {"1.0.0": -5}, "shadow": None}},
            }
        ),
        '{"generation": 3, "tables": ',
        "\x00\xff garbage",
        "[]",
    ],
)
def test_corrupt_routing_file_is_an_error_that_names_it(worker: _Worker, content: str) -> None:
    worker.routing_file.write_text(content)
    server = worker.start()  # starts: no crash loop
    with _admin(server) as admin:
        ready = httpx.get(f"{server.url}/v2/health/ready")
        assert ready.status_code == 503
        assert str(worker.routing_file) in ready.json()["reason"]
        table = admin.get("/v2/routing")
        assert table.status_code == 200
        assert str(worker.routing_file) in table.json()["error"]
        assert table.json()["models"]["m"]["weights"] == {}  # nothing from the bad file
        # The controller puts its table again: valid file, ready, no error.
        put = admin.put("/v2/routing/m", json={"weights": {"1.0.0": 100}, "generation": 1})
        assert put.status_code == 200, put.text
        assert "error" not in admin.get("/v2/routing").json()
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
    saved = schema.PersistedRouting.model_validate_json(worker.routing_file.read_bytes())
    assert saved.tables["m"].weights == {"1.0.0": 100}
