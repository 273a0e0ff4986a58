"""Deterministic trainer for the example model `fraud-scorer`.

Writes, under --out (default: the repository root):
  models/fraud-scorer-VERSION.onnx    skl2onnx export: input `input` FP32 [-1, 30];
                                      outputs `label` INT64 [-1], `probabilities` FP32 [-1, 2]
  models/fraud-scorer-VERSION.json    baseline metrics (the spec's `baseline.value`)
  data/fraud-scorer-val.npz           validation set: `input` + `labels` (same for every version)

The data is synthetic and fraud-like (imbalanced, 30 features), generated with fixed seeds, so
the same command gives the same model and the same accuracy on every run.

  python examples/train.py --version 1.0.0 --out .
  python examples/train.py --version 1.1.0
  python examples/train.py --version 1.2.0 --variant broken   # labels inverted: bad accuracy
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

NAME = "fraud-scorer"
FEATURES = 30
SEED = 20240611
# Hyper-parameters per version: 1.1.0 is a slightly different model with similar accuracy.
PARAMS: dict[str, dict[str, Any]] = {
    "1.0.0": {"C": 1.0, "max_iter": 200},
    "1.1.0": {"C": 0.05, "max_iter": 500},
}
DEFAULT_PARAMS = {"C": 1.0, "max_iter": 200}


def dataset() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train/validation split of one fixed synthetic data set."""
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    x, y = make_classification(
        n_samples=12_000,
        n_features=FEATURES,
        n_informative=12,
        n_redundant=6,
        n_clusters_per_class=1,
        weights=[0.85, 0.15],
        flip_y=0.01,
        class_sep=0.8,
        random_state=SEED,
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x.astype(np.float32), y.astype(np.int64), test_size=2_000, random_state=SEED, stratify=y
    )
    return x_train, x_val, y_train, y_val


def train(version: str, variant: str) -> tuple[Any, dict[str, Any]]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, _, y_train, _ = dataset()
    if variant == "broken":
        # A realistic bug: the label encoding got inverted upstream.
        y_train = 1 - y_train
    params = PARAMS.get(version, DEFAULT_PARAMS)
    model = make_pipeline(StandardScaler(), LogisticRegression(random_state=SEED, **params))
    model.fit(x_train, y_train)
    return model, params


def export(model: Any, version: str) -> bytes:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    classifier = model.steps[-1][1]
    onnx_model = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, FEATURES]))],
        options={id(classifier): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    # skl2onnx names the graph with a random uuid; a fixed name keeps the bytes reproducible.
    onnx_model.graph.name = f"{NAME}-{version}"
    return bytes(onnx_model.SerializeToString())


def onnx_accuracy(blob: bytes, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy as conformance measures it: the first output (`label`, 1-D) is the prediction."""
    import onnxruntime as ort

    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    label = session.run(None, {"input": x})[0]
    return float(np.mean(np.asarray(label) == y))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--version", default="1.0.0", help="semantic version of the model")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--variant", choices=["good", "broken"], default="good")
    args = parser.parse_args(argv)

    _, x_val, _, y_val = dataset()
    model, params = train(args.version, args.variant)
    blob = export(model, args.version)
    accuracy = round(onnx_accuracy(blob, x_val, y_val), 4)

    models_dir, data_dir = args.out / "models", args.out / "data"
    models_dir.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    artifact = models_dir / f"{NAME}-{args.version}.onnx"
    artifact.write_bytes(blob)
    np.savez(data_dir / f"{NAME}-val.npz", input=x_val, labels=y_val)
    report = {
        "name": NAME,
        "version": args.version,
        "variant": args.variant,
        "metric": "accuracy",
        "value": accuracy,
        "sklearn_accuracy": round(float(model.score(x_val, y_val)), 4),
        "params": params,
        "artifact": str(artifact),
        "sha256": hashlib.sha256(blob).hexdigest(),
        "validation": str(data_dir / f"{NAME}-val.npz"),
        "validation_rows": len(y_val),
    }
    text = json.dumps(report, indent=2, sort_keys=True)
    (models_dir / f"{NAME}-{args.version}.json").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
