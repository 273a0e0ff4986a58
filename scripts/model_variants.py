"""Behavioural doubles of a trained classifier, for the rollback demo and the e2e tests.

Each variant keeps the classifier's signature and predictions (so it passes the conformance
accuracy test) and changes one behaviour a canary gate must catch:

- slow:     adds a chain of large MatMuls whose result is multiplied by 0 and added to the
            probabilities: same answers, several milliseconds more per request
- erroring: reshapes the probabilities to an impossible shape when any input value is above
            50 (out of the training range): normal rows succeed, such rows raise at run time

  python scripts/model_variants.py slow models/fraud-scorer-1.1.0.onnx models/slow.onnx
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PROBABILITIES = "probabilities"
POISON_ABOVE = 50.0


def _rename_output(model: onnx.ModelProto, old: str, new: str) -> None:
    for node in model.graph.node:
        node.output[:] = [new if o == old else o for o in node.output]


def _input_width(model: onnx.ModelProto) -> int:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return int(dims[1].dim_value)


def slow(model: onnx.ModelProto, width: int = 768, layers: int = 8) -> onnx.ModelProto:
    source = model.graph.input[0].name
    raw = PROBABILITIES + "_raw"
    _rename_output(model, PROBABILITIES, raw)
    rng = np.random.default_rng(3)
    features = _input_width(model)
    shapes = [(features, width)] + [(width, width)] * (layers - 1)
    previous = source
    for index, shape in enumerate(shapes):
        weight = (rng.normal(size=shape) / np.sqrt(shape[0])).astype(np.float32)
        model.graph.initializer.append(numpy_helper.from_array(weight, f"slow_w{index}"))
        out = f"slow_h{index}"
        model.graph.node.append(helper.make_node("MatMul", [previous, f"slow_w{index}"], [out]))
        previous = out
    model.graph.initializer.append(numpy_helper.from_array(np.float32(0.0), "slow_zero"))
    model.graph.node.extend(
        [
            helper.make_node("ReduceSum", [previous], ["slow_sum"], keepdims=0),
            helper.make_node("Mul", ["slow_sum", "slow_zero"], ["slow_nothing"]),
            helper.make_node("Add", [raw, "slow_nothing"], [PROBABILITIES]),
        ]
    )
    return model


def erroring(model: onnx.ModelProto) -> onnx.ModelProto:
    source = model.graph.input[0].name
    raw = PROBABILITIES + "_raw"
    _rename_output(model, PROBABILITIES, raw)
    inits = {
        "err_limit": np.float32(POISON_ABOVE),
        "err_scale": np.array([1000], dtype=np.int64),
        "err_two": np.array([2], dtype=np.int64),
        "err_minus_one": np.array([-1], dtype=np.int64),
    }
    for name, value in inits.items():
        model.graph.initializer.append(numpy_helper.from_array(value, name))
    model.graph.node.extend(
        [
            helper.make_node("ReduceMax", [source], ["err_max"], keepdims=1),
            helper.make_node("Greater", ["err_max", "err_limit"], ["err_bad"]),
            helper.make_node("Cast", ["err_bad"], ["err_flag"], to=TensorProto.INT64),
            helper.make_node("Reshape", ["err_flag", "err_minus_one"], ["err_flag1"]),
            helper.make_node("Mul", ["err_flag1", "err_scale"], ["err_extra"]),
            helper.make_node("Add", ["err_extra", "err_two"], ["err_width"]),
            helper.make_node("Concat", ["err_minus_one", "err_width"], ["err_shape"], axis=0),
            helper.make_node("Reshape", [raw, "err_shape"], [PROBABILITIES]),
        ]
    )
    return model


def write(kind: str, source: Path, target: Path, *, layers: int = 8) -> Path:
    model = onnx.load(str(source))
    changed = slow(model, layers=layers) if kind == "slow" else erroring(model)
    onnx.checker.check_model(changed)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(changed, str(target))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["slow", "erroring"])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--layers", type=int, default=8, help="slow: MatMul layers (~0.6 ms each)")
    args = parser.parse_args(argv)
    print(write(args.kind, args.source, args.target, layers=args.layers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
