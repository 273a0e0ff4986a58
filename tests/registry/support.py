"""Tiny real ONNX models (scikit-learn + skl2onnx) and spec builders for the registry tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mlops.spec import models as spec
from tests.support import logistic_onnx

FEATURES = 4
SIGNATURE: dict[str, Any] = {
    "inputs": [{"name": "input", "dtype": "FP32", "shape": [-1, FEATURES]}],
    "outputs": [
        {"name": "label", "dtype": "INT64", "shape": [-1]},
        {"name": "probabilities", "dtype": "FP32", "shape": [-1, 2]},
    ],
}


def train(path: Path, seed: int, *, zipmap: bool = False, features: int = FEATURES) -> None:
    """A logistic regression exported to ONNX; different seeds give different bytes."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, features)).astype(np.float32)
    y = (x[:, 0] + 0.3 * x[:, 1] > 0).astype(np.int64)
    path.write_bytes(logistic_onnx(x, y, zipmap=zipmap)[1])


def validation(path: Path, seed: int = 7, rows: int = 300) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(seed)
    x = rng.normal(loc=[0.0, 1.0, -2.0, 5.0], scale=[1.0, 0.5, 2.0, 0.1], size=(rows, FEATURES))
    x = x.astype(np.float32)
    np.savez(path, input=x, labels=(x[:, 0] > 0).astype(np.int64))
    return x


def deployment(
    name: str,
    version: str,
    *,
    artifact: str = "models/model.onnx",
    signature: dict[str, Any] | None = None,
    **model: Any,
) -> spec.ModelDeployment:
    return spec.ModelDeployment.model_validate(
        {
            "apiVersion": "mlops/v1",
            "kind": "ModelDeployment",
            "metadata": {"name": name},
            "spec": {
                "model": {
                    "version": version,
                    "artifact": artifact,
                    "signature": signature or SIGNATURE,
                    "baseline": {"metric": "accuracy", "value": 0.94, "p99_ms": 15},
                    **model,
                }
            },
        }
    )
