"""Absurd version settings are refused in one line and leave the version UNAVAILABLE with its
reason (never stuck LOADING); warm-up is bounded; SIGTERM stops an engine that is warming up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlops.serving import settings as settings_mod
from mlops.serving.config import ServeConfig
from mlops.serving.session import Session
from tests.serving import fixtures
from tests.serving.conftest import EngineThread, free_port

FEATURES = fixtures.FEATURES


def _signature(shape: list[int], inputs: int = 1) -> dict[str, Any]:
    return {
        "inputs": [{"name": f"in{i}", "dtype": "FP32", "shape": shape} for i in range(inputs)],
        "outputs": [{"name": "probabilities", "dtype": "FP32", "shape": [-1, 2]}],
    }


def _with(**changes: Any) -> dict[str, Any]:
    settings = fixtures.classifier_settings()
    for key, value in changes.items():
        if key in ("max_batch_size", "max_queue_size", "preferred_batch_sizes"):
            settings["batching"] = {**settings["batching"], key: value}
        elif key == "max_concurrent_batches":
            settings["batching"] = {"max_batch_size": 8, key: value}
        else:
            settings[key] = value
    return settings


ABSURD = [
    pytest.param(_with(signature=_signature([-1, 2**40])), "less than or equal to", id="dim-2^40"),
    pytest.param(_with(signature=_signature([-1, 2**30])), "elements", id="row-2^30"),
    pytest.param(_with(signature=_signature([-1, 8], inputs=65)), "at most 64", id="inputs"),
    pytest.param(_with(signature=_signature([-1] + [1] * 20)), "at most 16", id="rank"),
    pytest.param(_with(warmup={"requests": 1_000_000_000}), "warmup.requests", id="warmup"),
    pytest.param(_with(warmup={"requests": True}), "warmup.requests", id="warmup-bool"),
    pytest.param(_with(max_batch_size=10**9), "max_batch_size", id="batch"),
    pytest.param(_with(max_queue_size=10**9), "max_queue_size", id="queue"),
    pytest.param(_with(max_concurrent_batches=10**6), "max_concurrent", id="concurrent"),
    pytest.param(
        _with(max_batch_size=8, preferred_batch_sizes=list(range(1, 100))),
        "preferred_batch_sizes",
        id="preferred",
    ),
    pytest.param(_with(classification="yes"), "classification", id="classification"),
    pytest.param(_with(batchng={}), "batchng", id="typo"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineThread]:
    root = tmp_path_factory.mktemp("bounds")
    model = fixtures.classifier_bytes()
    fixtures.write_version(root / "repo", "m", "1.0.0", model, fixtures.classifier_settings())
    fixtures.write_version(root / "repo", "absurd", "1.0.0", model, {})
    config = ServeConfig(repository=root / "repo", state_dir=root / "state", load_all=False)
    engine = EngineThread(config)
    yield engine
    engine.stop()


def _row(server: EngineThread, name: str) -> dict[str, str]:
    rows = httpx.post(f"{server.url}/v2/repository/index", json={}).json()
    (row,) = [r for r in rows if r["name"] == name and r["version"] == "1.0.0"]
    return dict(row)


@pytest.mark.parametrize(("settings", "complaint"), ABSURD)
def test_absurd_settings_leave_the_version_unavailable_with_its_reason(
    server: EngineThread, settings: dict[str, Any], complaint: str
) -> None:
    admin = server.admin_url + "/v2/repository/models/absurd"
    body = {"parameters": {"version": "1.0.0", "settings": settings}}
    reply = httpx.post(f"{admin}/load", json=body, timeout=60)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error.startswith("failed to load absurd@1.0.0: settings: ") and complaint in error
    row = _row(server, "absurd")
    assert row["state"] == "UNAVAILABLE" and complaint in row["reason"]
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 503
    unload = httpx.post(f"{admin}/unload", json={"parameters": {"version": "1.0.0"}}, timeout=60)
    assert unload.status_code == 200
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200


def test_a_refused_reload_keeps_the_loaded_version_serving(server: EngineThread) -> None:
    admin = server.admin_url + "/v2/repository/models/m/load"
    good = {"parameters": {"version": "1.0.0"}}
    assert httpx.post(admin, json=good, timeout=60).status_code == 200
    bad = {"parameters": {"version": "1.0.0", "settings": _with(warmup={"requests": 10**9})}}
    assert httpx.post(admin, json=bad, timeout=60).status_code == 400
    assert _row(server, "m")["state"] == "READY"
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, FEATURES],
                        "data": [0.5] * FEATURES}]}  # fmt: skip
    assert httpx.post(f"{server.url}/v2/models/m/infer", json=body).status_code == 200
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200


def test_warm_up_stops_at_its_time_budget_and_when_told(tmp_path: Path) -> None:
    path = tmp_path / "slow.onnx"
    path.write_bytes(fixtures.slow_bytes())
    parsed = settings_mod.parse(fixtures.slow_settings())
    session = Session(str(path), parsed, 1)
    requests = settings_mod.MAX_WARMUP_REQUESTS
    runs = session.warm_up(requests, budget=0.0)
    assert runs == 1  # the budget was spent by the first run: it stopped there
    stop = threading.Event()
    stop.set()
    assert session.warm_up(requests, stop=stop) == 0


def _serve(tmp_path: Path) -> tuple[subprocess.Popen[str], int]:
    """An engine whose one version takes minutes to warm up: 1,000 runs of 256 rows each
    through six 1024x1024 MatMuls."""
    settings = fixtures.slow_settings()
    settings["signature"]["inputs"][0]["shape"] = [256, fixtures.SLOW_WIDTH]
    settings["signature"]["outputs"][0]["shape"] = [256, fixtures.SLOW_WIDTH]
    settings["warmup"] = {"requests": settings_mod.MAX_WARMUP_REQUESTS}
    fixtures.write_version(tmp_path / "repo", "slow", "1.0.0", fixtures.slow_bytes(), settings)
    port, admin_port = free_port(), free_port()
    command = [sys.executable, "-c", "from mlops.cli import main; main()", "serve"]
    proc = subprocess.Popen(
        [*command, "--repository", str(tmp_path / "repo"), "--state-dir", str(tmp_path / "s"),
         "--port", str(port), "--admin-port", str(admin_port), "--no-load-all"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    state = tmp_path / "s" / "worker-0.json"
    deadline = time.monotonic() + 60
    while not state.is_file():
        assert proc.poll() is None and time.monotonic() < deadline, "engine did not start"
        time.sleep(0.05)
    return proc, admin_port


def test_sigterm_during_a_long_warm_up_exits_within_the_grace_period(tmp_path: Path) -> None:
    proc, admin_port = _serve(tmp_path)
    admin = f"http://127.0.0.1:{admin_port}"
    answers: list[object] = []

    def load() -> None:
        body = {"parameters": {"version": "1.0.0"}}
        try:
            answers.append(httpx.post(f"{admin}/v2/repository/models/slow/load", json=body,
                                      timeout=300).status_code)  # fmt: skip
        except httpx.HTTPError as exc:
            answers.append(type(exc).__name__)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    try:
        deadline = time.monotonic() + 60
        while True:  # warming up: the version is LOADING
            rows = httpx.post(f"{admin}/v2/repository/index", json={}).json()
            if any(r["name"] == "slow" and r["state"] == "LOADING" for r in rows):
                break
            assert time.monotonic() < deadline, rows
            time.sleep(0.05)
        time.sleep(0.5)  # well inside the warm-up (minutes long), not at its start
        proc.send_signal(signal.SIGTERM)
        # The contract's grace period: uvicorn's 10 s plus the worker's 2 s for busy threads.
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    loader.join(30)
    assert answers and answers[0] != 200, answers  # the load never claimed success


def test_settings_documented_bounds_match_the_spec() -> None:
    from mlops.spec import models as spec

    assert settings_mod.MAX_BATCH_SIZE == 4096
    fields = settings_mod.Batching.model_fields
    for name in ("max_queue_size", "max_queue_delay_ms"):
        assert fields[name].metadata == spec.Batching.model_fields[name].metadata
    assert json.loads(settings_mod.Batching().model_dump_json())["max_batch_size"] == 0
