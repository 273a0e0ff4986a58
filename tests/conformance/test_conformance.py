"""Conformance through the engine's V2 API: a good model passes, a model trained on shuffled
labels fails on accuracy, a slow one fails on latency, a tampered artifact fails on sha256."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlops import conformance
from mlops.spec import models as spec
from tests.conformance.conftest import Target, deployment, train
from tests.serving import fixtures

pytestmark = pytest.mark.slow


def register_and_load(
    target: Target,
    dep: spec.ModelDeployment,
    validation: Path | None,
    batching: dict[str, Any] | None = None,
) -> None:
    target.registry.register(dep, Path(dep.spec.model.artifact), validation)
    settings: dict[str, Any] = {"signature": dep.spec.model.signature.model_dump(mode="json")}
    if batching is not None:
        settings["batching"] = batching
    artifact = target.registry.artifact_path(dep.name, dep.spec.model.version)
    target.runtime.load(dep.name, dep.spec.model.version, artifact, settings)


def payload(dep: spec.ModelDeployment, validation: Path | None, **extra: Any) -> dict[str, Any]:
    baseline = dep.spec.model.baseline
    return {
        "semver": dep.spec.model.version,
        "metric": "accuracy",
        "baseline": baseline.value,
        "tolerance": 0.005,
        "p99_ms": baseline.p99_ms,
        "max_increase": 0.2,
        "validation": str(validation) if validation else None,
        **extra,
    }


def test_good_model_passes(target: Target) -> None:
    good = train(target.ws.root, "good", shuffle_labels=False)
    dep = deployment("scorer", "1.0.0", good.artifact, accuracy=good.accuracy, p99_ms=200)
    register_and_load(target, dep, good.validation)
    result = conformance.run(target, "scorer", "1.0.0", payload(dep, good.validation))
    assert result["passed"] is True, result["reason"]
    assert result["reasons"] == [] and result["reason"] == ""
    # Served by the engine, the ONNX export scores what training measured.
    assert result["accuracy"] == pytest.approx(good.accuracy, abs=1e-9)
    assert result["rows"] == 400
    assert 0 < result["p50_ms"] <= result["p99_ms"] < 200 * 1.2
    assert result["latency_requests"] == 200
    assert result["p99_budget_ms"] == pytest.approx(240)
    json.dumps(result)  # recorded on the registry version as JSON
    target.registry.record_conformance("scorer", "1.0.0", result)


def test_validation_batches_respect_the_versions_max_batch_size(target: Target) -> None:
    # The engine refuses a request above max_batch_size; conformance must size its batches.
    good = train(target.ws.root, "small-batches", shuffle_labels=False)
    dep = deployment("scorer-b", "1.0.0", good.artifact, accuracy=good.accuracy, p99_ms=200)
    register_and_load(target, dep, good.validation, {"max_batch_size": 8})
    result = conformance.run(target, "scorer-b", "1.0.0", payload(dep, good.validation))
    assert result["passed"] is True, result["reason"]
    assert result["rows"] == 400


def test_model_trained_on_shuffled_labels_fails(target: Target) -> None:
    good = train(target.ws.root, "good2", shuffle_labels=False)
    broken = train(target.ws.root, "broken", shuffle_labels=True)
    # It claims the good model's training accuracy, as a mislabelled pipeline would.
    dep = deployment("scorer", "1.1.0", broken.artifact, accuracy=good.accuracy, p99_ms=200)
    register_and_load(target, dep, good.validation)
    result = conformance.run(target, "scorer", "1.1.0", payload(dep, good.validation))
    assert result["passed"] is False
    assert result["accuracy"] < 0.7
    assert "below the baseline" in result["reason"]


def test_slow_model_fails_on_p99(target: Target) -> None:
    width = 1024
    slow = target.ws.root / "slow.onnx"
    slow.write_bytes(fixtures.slow_bytes(width=width, layers=6))
    outputs = [{"name": "output", "dtype": "FP32", "shape": [-1, width]}]
    dep = deployment("heavy", "1.0.0", slow, accuracy=0.9, p99_ms=0.3, outputs=outputs, width=width)
    register_and_load(target, dep, None)
    result = conformance.run(target, "heavy", "1.0.0", payload(dep, None))
    assert result["passed"] is False
    assert result["accuracy"] is None and result["accuracy_skipped"] == "no validation data"
    assert result["p99_ms"] > 0.36
    assert "p99" in result["reason"] and "over the baseline" in result["reason"]


def test_tampered_copy_in_the_engine_fails_on_sha256(target: Target) -> None:
    good = train(target.ws.root, "good3", shuffle_labels=False)
    dep = deployment("scorer", "1.2.0", good.artifact, accuracy=good.accuracy, p99_ms=200)
    register_and_load(target, dep, good.validation)
    served = target.runtime.served_artifact("scorer", "1.2.0")
    assert served is not None
    served.write_bytes(served.read_bytes() + b"\0")
    result = conformance.run(target, "scorer", "1.2.0", payload(dep, good.validation))
    assert result["passed"] is False
    assert "does not match sha256" in result["reason"]
    pinned = payload(dep, good.validation, sha256="0" * 64)
    assert "is not the registered" in conformance.run(target, "scorer", "1.2.0", pinned)["reason"]
