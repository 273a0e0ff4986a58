"""Triton config.pbtxt: parsed by protobuf into Triton's own ModelConfig message."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from mlops import errors
from mlops.providers.kubernetes import triton
from mlops.spec import models as spec
from tests.k8s import conftest as c


def parse(text: str) -> pb.ModelConfig:
    return text_format.Parse(text, pb.ModelConfig())


def config_of(d: spec.ModelDeployment, number: int = 7) -> str:
    serving = d.spec.serving
    return triton.model_config(
        d.name, number, d.spec.model.signature, serving.batching, serving.hardware
    )


def test_cpu_config_parses_with_batch_dim_dropped() -> None:
    config = parse(config_of(c.cpu_spec()))
    assert config.name == "fraud-scorer"
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 32
    assert list(config.version_policy.specific.versions) == [7]
    (inp,) = config.input
    assert (inp.name, inp.data_type, list(inp.dims)) == ("input", pb.TYPE_FP32, [30])
    label, probs = config.output
    # A [batch]-only tensor: dims [1], reshaped to a scalar per row.
    assert (label.data_type, list(label.dims), list(label.reshape.shape)) == (
        pb.TYPE_INT64,
        [1],
        [],
    )
    assert label.HasField("reshape")
    assert list(probs.dims) == [2]
    assert config.dynamic_batching.max_queue_delay_microseconds == 5000
    assert config.dynamic_batching.default_queue_policy.max_queue_size == 256
    (group,) = config.instance_group
    assert (group.kind, group.count) == (pb.ModelInstanceGroup.KIND_CPU, 1)


def test_gpu_config_has_gpu_instances_and_preferred_sizes() -> None:
    config = parse(config_of(c.gpu_spec(), 3))
    assert config.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    assert list(config.dynamic_batching.preferred_batch_size) == [16, 32]
    assert config.dynamic_batching.max_queue_delay_microseconds == 2500
    assert list(config.version_policy.specific.versions) == [3]


def test_round_trip_is_stable() -> None:
    for d in (c.cpu_spec(), c.gpu_spec()):
        config = parse(config_of(d))
        again = parse(text_format.MessageToString(config))
        assert again == config


def test_no_batching_keeps_full_shape_and_no_dynamic_batching() -> None:
    d = c.deployment(batching={"max_batch_size": 1})
    config = parse(config_of(d))
    assert config.max_batch_size == 0
    assert list(config.input[0].dims) == [-1, 30]
    assert not config.HasField("dynamic_batching")


def test_every_v2_dtype_maps_to_a_triton_type() -> None:
    for v2, name in triton.DTYPES.items():
        d = c.deployment(inputs=[{"name": "x", "dtype": v2, "shape": [-1, 4]}])
        config = parse(config_of(d))
        assert pb.DataType.Name(config.input[0].data_type) == name
    assert triton.DTYPES["BYTES"] == "TYPE_STRING"


def test_batching_refuses_a_fixed_first_dimension_naming_every_tensor() -> None:
    d = c.deployment(
        inputs=[{"name": "a", "dtype": "FP32", "shape": [8, 30]}],
        outputs=[{"name": "b", "dtype": "FP32", "shape": [4]}],
    )
    with pytest.raises(errors.SpecError) as caught:
        config_of(d)
    message = caught.value.message
    assert "input 'a'" in message and "output 'b'" in message and "first dimension" in message


def test_unknown_dtype_is_refused() -> None:
    with pytest.raises(errors.SpecError, match="BF16"):
        triton.triton_dtype("BF16")


def test_version_number_is_the_registry_integer() -> None:
    assert triton.version_number("12") == 12
    for bad in ("0", "2.3.1", "", "-1"):
        with pytest.raises(errors.RegistryError):
            triton.version_number(bad)
    layout = triton.Layout("fraud-scorer", 12)
    assert (layout.config, layout.model) == (
        "fraud-scorer/config.pbtxt",
        "fraud-scorer/12/model.onnx",
    )
