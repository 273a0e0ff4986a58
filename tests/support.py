"""Helpers several test areas share: the in-process CLI runner and a tiny ONNX classifier.

Imported as `tests.support` (pytest runs with the repository root on sys.path).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from mlops import cli


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


Runner = Callable[..., Result]


def cli_runner(capsys: pytest.CaptureFixture[str]) -> Runner:
    """The real CLI entry point (`mlops.cli.main`) in-process; output captured per call.
    A non-integer exit code (a message) counts as 1, as the shell would see it."""

    def invoke(*args: str) -> Result:
        capsys.readouterr()
        try:
            cli.main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


def logistic_onnx(
    x: np.ndarray[Any, Any], y: np.ndarray[Any, Any], *, zipmap: bool = False
) -> tuple[Any, bytes]:
    """Fit a logistic regression on (x, y) and export it to ONNX (input `input`, opset 17):
    the fitted model and the serialized bytes."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(x, y)
    onx = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, x.shape[1]]))],
        options={id(model): {"zipmap": zipmap}},
        target_opset=17,
    )
    return model, bytes(onx.SerializeToString())
