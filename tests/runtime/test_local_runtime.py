"""LocalRuntime against a real engine process with two workers (contract tests)."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from mlops import errors
from mlops.providers.base import Runtime
from mlops.providers.engine import client as engine_client
from mlops.providers.engine.runtime import LocalRuntime
from mlops.state import models as state
from mlops.workspace import Workspace
from tests.runtime import support
from tests.serving import fixtures

pytestmark = pytest.mark.slow

SETTINGS = fixtures.classifier_settings()


def routing_of_every_worker(rt: LocalRuntime, name: str) -> list[dict[str, object]]:
    tables = []
    for url in rt.worker_admin_urls():
        with engine_client.AdminClient(url, token=rt.process.admin_token()) as admin:
            tables.append(admin.routing()["models"][name])
    return tables


def test_not_running_is_unreachable_not_an_error(workspace: Workspace) -> None:
    rt = LocalRuntime(workspace)
    assert isinstance(rt, Runtime)
    assert rt.reachable() is False
    assert rt.refresh() == {}
    assert rt.worker_admin_urls() == []
    assert rt.stop() is False
    with pytest.raises(errors.TransientError, match="not running"):
        rt.set_traffic("clf", {"1.0.0": 100}, None)


def test_lifecycle_load_route_read_back_unload(runtime: LocalRuntime, tmp_path: Path) -> None:
    assert runtime.reachable()
    urls = runtime.worker_admin_urls()
    assert len(urls) == 2 and len(set(urls)) == 2
    assert runtime.refresh() == {}
    v1 = support.classifier_artifact(tmp_path / "a", seed=0)
    v2 = support.classifier_artifact(tmp_path / "b", seed=1)

    runtime.load("clf", "1.0.0", v1, SETTINGS)
    staged = runtime.process.repository / "clf" / "1.0.0"
    assert (staged / "model.onnx").read_bytes() == v1.read_bytes()
    assert (staged / "settings.json").is_file()
    gen1 = runtime.set_traffic("clf", {"1.0.0": 100}, None)

    # Loading a second version must not move traffic: the table is already pinned.
    runtime.load("clf", "1.1.0", v2, SETTINGS)
    model = runtime.refresh()["clf"]
    assert model.loaded == {"1.0.0": "ready", "1.1.0": "ready"}
    assert model.weights == {"1.0.0": 100}
    assert (model.replicas, model.replicas_alive) == (2, 2)
    assert model.generation == gen1
    assert model.config["1.1.0"]["signature"] == SETTINGS["signature"]

    shadow = state.ShadowRoute(version="1.1.0", percent=50)
    gen2 = runtime.set_traffic("clf", {"1.0.0": 90, "1.1.0": 10}, shadow)
    assert gen2 > gen1
    for table in routing_of_every_worker(runtime, "clf"):
        assert table["generation"] == gen2
        assert table["weights"] == {"1.0.0": 90, "1.1.0": 10}
    model = runtime.refresh(["clf"])["clf"]
    assert model.weights == {"1.0.0": 90, "1.1.0": 10}
    assert model.shadow == shadow
    # The same table again changes nothing, not even the generation.
    assert runtime.set_traffic("clf", {"1.0.0": 90, "1.1.0": 10}, shadow) == gen2

    # Requests through the shared front door are served by both versions.
    served = set()
    with httpx.Client(base_url=runtime.inference_url()) as client:
        body = {
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 8], "data": [0.1] * 8}]
        }
        for _ in range(200):
            response = client.post("/v2/models/clf/infer", json=body)
            assert response.status_code == 200
            served.add(response.headers["x-mlops-version"])
    assert served == {"1.0.0", "1.1.0"}

    # A version with weight cannot be unloaded; weight 0 first, then it can.
    with pytest.raises(engine_client.EngineRejected, match="weight"):
        runtime.unload("clf", "1.1.0")
    runtime.set_traffic("clf", {"1.0.0": 100, "1.1.0": 0}, None)
    runtime.unload("clf", "1.1.0")
    runtime.unload("clf", "1.1.0")  # idempotent
    model = runtime.refresh()["clf"]
    assert model.loaded == {"1.0.0": "ready"}
    assert model.weights == {"1.0.0": 100}
    assert not (runtime.process.repository / "clf" / "1.1.0").exists()


def test_first_load_then_second_keeps_traffic_on_the_first(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    # Without any table the engine would send everything to the newest version.
    runtime.load("clf", "1.0.0", support.classifier_artifact(tmp_path, 0), SETTINGS)
    runtime.load("clf", "2.0.0", support.classifier_artifact(tmp_path, 1), SETTINGS)
    assert runtime.refresh()["clf"].weights == {"1.0.0": 100}


def test_binary_inference_pinned_to_a_version(runtime: LocalRuntime, tmp_path: Path) -> None:
    runtime.load("clf", "1.0.0", support.classifier_artifact(tmp_path, 0), SETTINGS)
    client = engine_client.InferClient(runtime.inference_url())
    try:
        out = client.infer(
            "clf", "1.0.0", {"input": support.rows(5)}, {"input": "FP32"}, ["probabilities"]
        )
        assert out["probabilities"].shape == (5, 2)
        np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, rtol=1e-5)
        with pytest.raises(engine_client.EngineRejected) as info:
            client.infer("clf", "9.9.9", {"input": support.rows(1)}, {"input": "FP32"}, ["x"])
        assert info.value.status == 404
    finally:
        client.close()


def test_replica_change_keeps_versions_and_weights(runtime: LocalRuntime, tmp_path: Path) -> None:
    runtime.load("clf", "1.0.0", support.classifier_artifact(tmp_path, 0), SETTINGS)
    runtime.load("clf", "1.1.0", support.classifier_artifact(tmp_path, 1), SETTINGS)
    runtime.set_traffic("clf", {"1.0.0": 80, "1.1.0": 20}, None)
    record = runtime.process.record()
    runtime.scale(3)  # live: the same engine process, one more worker
    assert len(runtime.worker_admin_urls()) == 3
    now = runtime.process.record()
    assert record is not None and now is not None and now.pid == record.pid
    model = runtime.refresh()["clf"]
    assert model.loaded == {"1.0.0": "ready", "1.1.0": "ready"}
    assert model.weights == {"1.0.0": 80, "1.1.0": 20}
    assert model.replicas_alive == 3


def test_stop_is_idempotent_and_leaves_nothing_running(workspace: Workspace) -> None:
    with support.running(workspace, replicas=1) as rt:
        record = rt.process.record()
        assert record is not None
        assert rt.reachable()
        rt.ensure_running(1)  # already running: same process
        assert rt.process.record() == record
    assert rt.reachable() is False
    assert rt.stop() is False
    assert not (workspace.state_dir / "engine.json").exists()


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    ws = support.make_workspace(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", ws.config.serve.port))
        busy.listen()
        with pytest.raises(errors.UsageError, match="in use"):
            LocalRuntime(ws).start(1)
