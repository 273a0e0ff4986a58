"""Conformance fixtures: a real MLflow registry (sqlite) and a real engine in one workspace,
with a classifier trained at test time and a held-out validation set."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlops.providers import base, factory
from mlops.providers.engine.runtime import LocalRuntime
from mlops.spec import models as spec
from mlops.workspace import Workspace
from tests.runtime import support
from tests.support import logistic_onnx

FEATURES = 8


@dataclass
class Target:
    ws: Workspace
    registry: base.Registry
    runtime: LocalRuntime


@dataclass(frozen=True)
class Trained:
    artifact: Path
    validation: Path
    accuracy: float  # on the validation set, as training reports it


def train(root: Path, name: str, *, shuffle_labels: bool) -> Trained:
    """LogisticRegression on a separable problem, exported with skl2onnx. With shuffled labels
    it learns nothing: the broken model that conformance must stop."""
    rng = np.random.default_rng(42)
    x = rng.normal(size=(2400, FEATURES)).astype(np.float32)
    y = (x[:, 0] - 0.8 * x[:, 2] + 0.3 * x[:, 5] > 0).astype(np.int64)
    x_train, y_train, x_val, y_val = x[:2000], y[:2000], x[2000:], y[2000:]
    if shuffle_labels:
        y_train = rng.permutation(y_train)
    model, onnx_bytes = logistic_onnx(x_train, y_train)
    artifact = root / f"{name}.onnx"
    artifact.write_bytes(onnx_bytes)
    validation = root / f"{name}-val.npz"
    np.savez(validation, input=x_val, labels=y_val)
    return Trained(artifact, validation, float(model.score(x_val, y_val)))


def deployment(
    name: str,
    version: str,
    artifact: Path,
    *,
    accuracy: float,
    p99_ms: float,
    outputs: list[dict[str, Any]] | None = None,
    width: int = FEATURES,
) -> spec.ModelDeployment:
    return spec.ModelDeployment.model_validate(
        {
            "apiVersion": "mlops/v1",
            "kind": "ModelDeployment",
            "metadata": {"name": name},
            "spec": {
                "model": {
                    "version": version,
                    "artifact": str(artifact),
                    "signature": {
                        "inputs": [{"name": "input", "dtype": "FP32", "shape": [-1, width]}],
                        "outputs": outputs
                        or [
                            {"name": "label", "dtype": "INT64", "shape": [-1]},
                            {"name": "probabilities", "dtype": "FP32", "shape": [-1, 2]},
                        ],
                    },
                    "baseline": {"metric": "accuracy", "value": accuracy, "p99_ms": p99_ms},
                }
            },
        }
    )


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    ws = support.make_workspace(tmp_path_factory.mktemp("conformance"))
    with support.running(ws, replicas=1) as runtime:
        yield Target(ws, factory.registry(ws), runtime)
