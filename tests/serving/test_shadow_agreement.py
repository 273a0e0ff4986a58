"""How shadow predictions are compared: a classifier by its classes, anything else by value.

skl2onnx classifiers (the example model) put a 1-D integer `label` first and probabilities
second; two healthy retrained versions agree on labels while their probabilities differ, so
such a model must be compared as a classifier or every agreement gate fails."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mlops.serving import settings as settings_mod
from mlops.serving import shadow
from mlops.serving.batcher import Outputs


def _settings(first: dict[str, Any], classification: bool | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "signature": {
            "inputs": [{"name": "input", "dtype": "FP32", "shape": [-1, 4]}],
            "outputs": [first, {"name": "probabilities", "dtype": "FP32", "shape": [-1, 2]}],
        }
    }
    if classification is not None:
        doc["classification"] = classification
    return doc


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        ({"name": "label", "dtype": "INT64", "shape": [-1]}, True),
        ({"name": "flag", "dtype": "BOOL", "shape": [-1]}, True),
        ({"name": "scores", "dtype": "FP32", "shape": [-1, 3]}, True),
        ({"name": "score", "dtype": "FP32", "shape": [-1]}, False),
        ({"name": "ids", "dtype": "INT64", "shape": [-1, 4, 2]}, False),
    ],
)
def test_default_classification(first: dict[str, Any], expected: bool) -> None:
    assert settings_mod.parse(_settings(first)).classification is expected


def test_explicit_setting_wins() -> None:
    label = {"name": "label", "dtype": "INT64", "shape": [-1]}
    assert settings_mod.parse(_settings(label, classification=False)).classification is False


def test_retrained_classifier_agrees_on_labels() -> None:
    label = {"name": "label", "dtype": "INT64", "shape": [-1]}
    parsed = settings_mod.parse(_settings(label))
    labels = np.array([0, 1, 1, 0], dtype=np.int64)
    old: Outputs = [labels, np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3]], np.float32)]
    new: Outputs = [
        labels.copy(),
        np.array([[0.8, 0.2], [0.3, 0.7], [0.45, 0.55], [0.6, 0.4]], np.float32),
    ]
    assert shadow.agree(old, new, parsed.classification)
    flipped: Outputs = [np.array([0, 1, 0, 0], dtype=np.int64), new[1]]
    assert not shadow.agree(old, flipped, parsed.classification)
