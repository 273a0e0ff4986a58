"""The engine serves only the bytes the controller expects: it hashes what it loads, reloads
when the staged file changed even with the same settings, refuses a digest mismatch, and
reports the digest it serves in the repository index."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from mlops.providers.engine.runtime import LocalRuntime
from mlops.serving.config import ServeConfig
from mlops.workspace import Workspace
from tests.runtime import support
from tests.serving import fixtures
from tests.serving.conftest import EngineThread, infer_body

MODEL_A = fixtures.classifier_bytes(seed=0)
MODEL_B = fixtures.classifier_bytes(seed=7)
SHA_A = hashlib.sha256(MODEL_A).hexdigest()
SHA_B = hashlib.sha256(MODEL_B).hexdigest()


def _replace(path: Path, data: bytes) -> None:
    """Swap the file by a rename, as staging (or someone tampering carefully) does."""
    tmp = path.with_name(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class _Engine:
    def __init__(self, root: Path, load_all: bool = False) -> None:
        self.model = (
            fixtures.write_version(
                root / "repo", "m", "1.0.0", MODEL_A, fixtures.classifier_settings()
            )
            / "model.onnx"
        )
        config = ServeConfig(repository=root / "repo", state_dir=root / "state", load_all=load_all)
        self.server = EngineThread(config)
        self.url = self.server.url
        self.admin = self.server.admin_url

    def load(self, **parameters: Any) -> httpx.Response:
        body = {"parameters": {"version": "1.0.0", **parameters}}
        return httpx.post(f"{self.admin}/v2/repository/models/m/load", json=body, timeout=60)

    def row(self) -> dict[str, str]:
        rows = httpx.post(f"{self.url}/v2/repository/index", json={}).json()
        (row,) = [r for r in rows if (r["name"], r["version"]) == ("m", "1.0.0")]
        return dict(row)

    def predict(self) -> list[float]:
        reply = httpx.post(f"{self.url}/v2/models/m/versions/1.0.0/infer", json=infer_body(3))
        assert reply.status_code == 200, reply.text
        return list(reply.json()["outputs"][0]["data"])


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[_Engine]:
    e = _Engine(tmp_path)
    yield e
    e.server.stop()


def test_index_reports_the_sha256_it_serves(engine: _Engine) -> None:
    assert engine.row()["sha256"] == ""  # staged, not loaded
    assert engine.load(sha256=SHA_A).status_code == 200
    row = engine.row()
    assert row["state"] == "READY" and row["sha256"] == SHA_A


def test_a_changed_file_is_reloaded_even_with_the_same_settings(engine: _Engine) -> None:
    assert engine.load().status_code == 200
    before = engine.predict()
    _replace(engine.model, MODEL_B)
    assert engine.load().status_code == 200  # same settings: it used to be a no-op
    assert engine.row()["sha256"] == SHA_B
    assert not np.allclose(engine.predict(), before)


def test_a_digest_mismatch_is_refused_and_nothing_unverified_is_served(engine: _Engine) -> None:
    assert engine.load(sha256=SHA_A).status_code == 200
    _replace(engine.model, MODEL_B)  # tampered after staging
    # The session loaded before the change still has the expected bytes: it keeps serving.
    assert engine.load(sha256=SHA_A).status_code == 200
    assert engine.row()["sha256"] == SHA_A
    # Expecting the tampered file's neighbour: refused, and the old session goes too.
    other = "0" * 64
    reply = engine.load(sha256=other)
    assert reply.status_code == 409
    assert f"has sha256 {SHA_B}, expected {other}" in reply.json()["error"]
    row = engine.row()
    assert row["state"] == "UNAVAILABLE" and SHA_B in row["reason"] and row["sha256"] == ""
    assert httpx.post(f"{engine.url}/v2/models/m/infer", json=infer_body()).status_code == 404
    assert httpx.get(f"{engine.url}/v2/health/ready").status_code == 503
    # The right bytes staged again: the same request loads them.
    _replace(engine.model, MODEL_A)
    assert engine.load(sha256=SHA_A).status_code == 200
    assert engine.row() | {"reason": ""} == {
        "name": "m",
        "version": "1.0.0",
        "state": "READY",
        "reason": "",
        "sha256": SHA_A,
    }


def test_settings_json_sha256_is_checked_at_start_up(tmp_path: Path) -> None:
    directory = fixtures.write_version(
        tmp_path / "repo",
        "m",
        "1.0.0",
        MODEL_B,
        {**fixtures.classifier_settings(), "sha256": SHA_A},
    )
    config = ServeConfig(repository=tmp_path / "repo", state_dir=tmp_path / "state")
    server = EngineThread(config, wait_ready=False)  # --load-all: loads what is on disk
    try:
        rows = httpx.post(f"{server.url}/v2/repository/index", json={}).json()
        assert [(r["state"], r["sha256"]) for r in rows] == [("UNAVAILABLE", "")]
        assert f"has sha256 {SHA_B}, expected {SHA_A}" in rows[0]["reason"]
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 503
    finally:
        server.stop()
    assert (directory / "model.onnx").read_bytes() == MODEL_B  # the engine changes no file


def test_bad_expected_digests_are_400(engine: _Engine) -> None:
    for bad in ("A" * 64, "abc", 5):
        reply = engine.load(sha256=bad)
        assert reply.status_code == 400 and "sha256" in reply.json()["error"]
    body = {"parameters": {"sha256": SHA_A}}
    reply = httpx.post(f"{engine.admin}/v2/repository/models/m/load", json=body, timeout=60)
    assert reply.status_code == 400 and "needs parameters.version" in reply.json()["error"]


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[tuple[Workspace, LocalRuntime]]:
    workspace = support.make_workspace(tmp_path / "ws")
    with support.running(workspace, replicas=1) as rt:
        yield workspace, rt


def test_local_target_restages_and_the_engine_reloads_a_tampered_model(
    runtime: tuple[Workspace, LocalRuntime], tmp_path: Path
) -> None:
    workspace, rt = runtime
    artifact = support.classifier_artifact(tmp_path / "a", seed=0)
    expected = hashlib.sha256(artifact.read_bytes()).hexdigest()
    rt.load("m", "1.0.0", artifact, fixtures.classifier_settings())
    staged = workspace.state_dir / "repository" / "m" / "1.0.0"
    assert json.loads((staged / "settings.json").read_text())["sha256"] == expected
    _replace(staged / "model.onnx", MODEL_B)
    # What apply does: stage the registered bytes again and load with the same settings.
    rt.load("m", "1.0.0", artifact, fixtures.classifier_settings())
    (url,) = rt.worker_admin_urls()
    rows = httpx.post(f"{url}/v2/repository/index", json={}).json()
    assert [(r["state"], r["sha256"]) for r in rows] == [("READY", expected)]
