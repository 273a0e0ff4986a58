"""Accelerators: a version whose settings name one runs on onnxruntime's CUDA (or TensorRT)
execution provider when onnxruntime has it, else on the CPU with a log line saying why.

The test that needs a GPU skips with the reason when onnxruntime has no CUDA provider here
(the only skip in this file); everything else runs on any machine.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from mlops.serving import session as session_mod
from mlops.serving import settings as settings_mod
from mlops.serving.errors import BadRequest
from mlops.spec import engine as engine_settings
from mlops.spec import models as spec
from tests.serving import fixtures

from .conftest import EngineThread, admin_token_file

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TRT = "TensorrtExecutionProvider"


@pytest.mark.parametrize(
    ("accelerator", "available", "chosen"),
    [
        (None, [CUDA, CPU], [CPU]),  # no accelerator asked: the CPU even with a GPU
        ("nvidia-t4", [TRT, CUDA, CPU], [CUDA, CPU]),
        ("nvidia-t4", [TRT, CPU], [TRT, CPU]),
        ("nvidia-t4", ["AzureExecutionProvider", CPU], [CPU]),
    ],
)
def test_the_providers_asked_for(
    accelerator: str | None, available: list[str], chosen: list[str]
) -> None:
    assert session_mod.execution_providers(accelerator, available) == chosen


def settings(accelerator: str | None) -> settings_mod.VersionSettings:
    raw: dict[str, Any] = fixtures.classifier_settings()
    if accelerator is not None:
        raw["accelerator"] = accelerator
    return settings_mod.parse(raw)


def model(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(fixtures.classifier_bytes(seed=3))
    return path


def test_without_a_gpu_an_accelerated_version_runs_on_the_cpu_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = model(tmp_path)
    available = ort.get_available_providers()
    with caplog.at_level(logging.WARNING, logger="mlops.serving"):
        accelerated = session_mod.Session(str(path), settings("nvidia-t4"), 1)
    plain = session_mod.Session(str(path), settings(None), 1)
    assert plain.providers == [CPU]
    x = np.random.default_rng(1).standard_normal((4, fixtures.FEATURES), dtype=np.float32)
    np.testing.assert_allclose(
        accelerated.run({"input": x})[0], plain.run({"input": x})[0], rtol=1e-4, atol=1e-5
    )
    if CUDA in available or TRT in available:
        assert accelerated.providers[0] in (CUDA, TRT)
    else:
        assert accelerated.providers == [CPU]
        assert "accelerator nvidia-t4 asked for" in caplog.text
        assert "running on the CPU" in caplog.text


@pytest.mark.skipif(
    CUDA not in ort.get_available_providers(),
    reason="needs a CUDA GPU and onnxruntime-gpu: onnxruntime.get_available_providers() "
    f"has no {CUDA} on this machine",
)
def test_on_a_gpu_an_accelerated_version_runs_on_cuda(tmp_path: Path) -> None:
    path = model(tmp_path)
    session = session_mod.Session(str(path), settings("nvidia-t4"), 1)
    assert session.providers[0] == CUDA
    x = np.random.default_rng(2).standard_normal((64, fixtures.FEATURES), dtype=np.float32)
    cpu = session_mod.Session(str(path), settings(None), 1)
    np.testing.assert_allclose(
        session.run({"input": x})[0], cpu.run({"input": x})[0], rtol=1e-3, atol=1e-4
    )


def test_the_spec_accelerator_travels_in_the_settings() -> None:
    deployment = spec.ModelDeployment.model_validate(
        {
            "apiVersion": "mlops/v1",
            "kind": "ModelDeployment",
            "metadata": {"name": "m"},
            "spec": {
                "model": {
                    "version": "1.0.0",
                    "artifact": "models/m.onnx",
                    "baseline": {"metric": "accuracy", "value": 0.9, "p99_ms": 10.0},
                    "signature": {
                        "inputs": [{"name": "input", "dtype": "FP32", "shape": [-1, 8]}],
                        "outputs": [{"name": "p", "dtype": "FP32", "shape": [-1, 2]}],
                    },
                },
                "serving": {"hardware": {"accelerator": "nvidia-t4", "count": 1}},
            },
        }
    )
    doc = engine_settings.engine_settings(deployment)
    assert doc["accelerator"] == "nvidia-t4"
    assert settings_mod.parse(doc).accelerator == "nvidia-t4"
    plain = deployment.model_copy(
        update={"spec": deployment.spec.model_copy(update={"serving": spec.Serving()})}
    )
    assert "accelerator" not in engine_settings.engine_settings(plain)


@pytest.mark.parametrize("bad", ["", "NVIDIA", "a" * 64, "-x", 3])
def test_a_hostile_accelerator_is_refused_in_one_line(bad: object) -> None:
    raw: dict[str, Any] = {**fixtures.classifier_settings(), "accelerator": bad}
    with pytest.raises(BadRequest, match="accelerator") as info:
        settings_mod.parse(raw)
    assert "\n" not in info.value.message


def test_the_engine_loads_and_serves_an_accelerated_version(tmp_path: Path) -> None:
    from mlops.serving.config import ServeConfig

    raw = {**fixtures.classifier_settings(), "accelerator": "nvidia-t4"}
    fixtures.write_version(tmp_path / "repo", "gpu", "1.0.0", fixtures.classifier_bytes(), raw)
    state = tmp_path / "state"
    state.mkdir()
    config = ServeConfig(
        repository=tmp_path / "repo", state_dir=state, admin_token_file=admin_token_file(state)
    )
    server = EngineThread(config)
    try:
        import httpx

        body = {
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 8], "data": [0.1] * 8}]
        }
        answer = httpx.post(f"{server.url}/v2/models/gpu/infer", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        loaded = server.engine.repository.live["gpu"]["1.0.0"]
        assert loaded.session.providers[-1] == CPU
    finally:
        server.stop()
