"""`mlops plan` estimates the requests a canary will see from the engine's measured rate."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from mlops.providers.engine.runtime import LocalRuntime
from tests.support import Runner

from .conftest import set_version
from .test_cli import SPEC

pytestmark = pytest.mark.slow


def test_canary_estimate_uses_the_measured_request_rate(
    mlops: Runner,
    workspace: Path,
    serving: LocalRuntime,
) -> None:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 30], "data": [0.1] * 30}]}
    with httpx.Client(base_url=serving.inference_url()) as client:
        for _ in range(100):
            assert client.post("/v2/models/fraud-scorer/infer", json=body).status_code == 200
    set_version(workspace / SPEC, "1.1.0")
    result = mlops("plan", "--format", "json")
    assert result.code == 0, result.err
    estimate = json.loads(result.out)["estimates"]["fraud-scorer"]
    assert estimate["rollout_seconds"] > 0
    # Some requests per second were measured, so the canary's share over the holds is known.
    assert estimate["canary_requests"] is not None and estimate["canary_requests"] > 0
