"""Reading an ONNX artifact's interface, and checking it against a spec signature."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops import errors
from mlops.providers.mlflow import onnx_artifact
from mlops.spec import models as spec
from tests.registry import support


def test_signature_read_from_the_graph(models_dir: Path) -> None:
    signature = onnx_artifact.read_signature(models_dir / "model.onnx")
    assert signature == spec.Signature.model_validate(support.SIGNATURE)  # dim_param -> -1


def test_graph_with_named_and_fixed_dims(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["batch", 3])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["batch", 3])
    model = helper.make_model(
        helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    onnx.save(model, tmp_path / "m.onnx")
    signature = onnx_artifact.read_signature(tmp_path / "m.onnx")
    assert signature.inputs[0].dtype is spec.DType.FP64 and signature.inputs[0].shape == [-1, 3]

    bf = helper.make_tensor_value_info("b", TensorProto.BFLOAT16, [1])
    odd = helper.make_model(
        helper.make_graph([helper.make_node("Identity", ["b"], ["y"])], "g", [bf], [y]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    onnx.save(odd, tmp_path / "bf.onnx")
    with pytest.raises(errors.ArtifactError, match="'b' has ONNX element type"):
        onnx_artifact.read_signature(tmp_path / "bf.onnx")


def test_zipmap_output_is_refused_with_a_hint(tmp_path: Path) -> None:
    support.train(tmp_path / "zip.onnx", seed=1, zipmap=True)
    with pytest.raises(errors.ArtifactError, match="zipmap"):
        onnx_artifact.read_signature(tmp_path / "zip.onnx")


def test_signature_problems_are_all_listed() -> None:
    declared = spec.Signature.model_validate(
        {
            "inputs": [
                {"name": "a", "dtype": "FP32", "shape": [-1, 4]},
                {"name": "b", "dtype": "INT64", "shape": [-1]},
            ],
            "outputs": [{"name": "y", "dtype": "FP32", "shape": [-1, 2]}],
        }
    )
    actual = spec.Signature.model_validate(
        {
            "inputs": [{"name": "a", "dtype": "FP32", "shape": [8, 4]}],
            "outputs": [
                {"name": "y", "dtype": "FP64", "shape": [-1, -1]},
                {"name": "z", "dtype": "FP32", "shape": [1]},
            ],
        }
    )
    assert onnx_artifact.signature_problems(declared, actual) == [
        "input 'a': shape [-1, 4] in the spec, [8, 4] in the model",
        "input 'b': declared in the spec, missing in the model",
        "output 'y': dtype FP32 in the spec, FP64 in the model",
        "output 'z': in the model, not declared in the spec",
    ]
    assert onnx_artifact.signature_problems(declared, declared) == []
