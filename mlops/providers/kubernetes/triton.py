"""NVIDIA Triton model configuration (`config.pbtxt`) and repository layout for one version.

Triton names versions with positive integers, not semantic versions: a version directory is
the registry's own integer version (MLflow's version number), so `fraud-scorer@2.3.1`
registered as MLflow version 7 lives at `fraud-scorer/7/model.onnx`. Each Kubernetes
Deployment serves exactly one version, so the policy pins that number.

The text is written here (no protobuf needed at run time); tests parse it into Triton's own
`ModelConfig` message to prove Triton would read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mlops import errors
from mlops.spec import models as spec

PLATFORM = "onnxruntime_onnx"
MODEL_FILE = "model.onnx"
CONFIG_FILE = "config.pbtxt"

# KServe V2 dtype -> Triton DataType. BYTES is Triton's TYPE_STRING.
DTYPES: dict[str, str] = {
    "BOOL": "TYPE_BOOL",
    "UINT8": "TYPE_UINT8",
    "UINT16": "TYPE_UINT16",
    "UINT32": "TYPE_UINT32",
    "UINT64": "TYPE_UINT64",
    "INT8": "TYPE_INT8",
    "INT16": "TYPE_INT16",
    "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64",
    "FP16": "TYPE_FP16",
    "FP32": "TYPE_FP32",
    "FP64": "TYPE_FP64",
    "BYTES": "TYPE_STRING",
}


@dataclass(frozen=True)
class Layout:
    """Where a version's files go inside a Triton model repository (paths relative to it)."""

    name: str
    version: int

    @property
    def config(self) -> str:
        return f"{self.name}/{CONFIG_FILE}"

    @property
    def version_dir(self) -> str:
        return f"{self.name}/{self.version}"

    @property
    def model(self) -> str:
        return f"{self.version_dir}/{MODEL_FILE}"


def version_number(registry_version: str | int) -> int:
    """The registry's integer version as Triton's version directory name."""
    text = str(registry_version).strip()
    if not text.isdigit() or int(text) < 1:
        raise errors.RegistryError(
            f"registry version {registry_version!r} is not a positive integer; Triton needs one"
        )
    return int(text)


def triton_dtype(dtype: str) -> str:
    try:
        return DTYPES[str(dtype)]
    except KeyError:
        known = ", ".join(DTYPES)
        raise errors.SpecError(f"dtype {dtype!r} has no Triton equivalent (use {known})") from None


def batching_enabled(batching: spec.Batching) -> bool:
    # Same rule as the engine: max_batch_size 0 or 1 means no batching.
    return batching.max_batch_size > 1


def model_config(
    name: str,
    version: int,
    signature: spec.Signature,
    batching: spec.Batching,
    hardware: spec.Hardware,
) -> str:
    """config.pbtxt for one ONNX version. Refuses (SpecError, every problem at once) a
    signature Triton cannot batch."""
    batched = batching_enabled(batching)
    problems: list[str] = []
    tensors: dict[str, list[str]] = {}
    for kind, specs in (("input", signature.inputs), ("output", signature.outputs)):
        blocks = []
        for tensor in specs:
            try:
                blocks.append(_tensor(tensor, batched))
            except errors.SpecError as exc:
                problems.append(f"{kind} {tensor.name!r}: {exc.message}")
        tensors[kind] = blocks
    if problems:
        raise errors.SpecError(f"{name}: cannot serve on Triton: " + "; ".join(problems))
    lines = [
        f"name: {_quote(name)}",
        f"platform: {_quote(PLATFORM)}",
        f"max_batch_size: {batching.max_batch_size if batched else 0}",
        f"version_policy: {{ specific: {{ versions: [ {version} ] }} }}",
        f"default_model_filename: {_quote(MODEL_FILE)}",
        *_list("input", tensors["input"]),
        *_list("output", tensors["output"]),
    ]
    if batched:
        lines += _dynamic_batching(batching)
    lines += _instance_group(hardware)
    return "\n".join(lines) + "\n"


def _tensor(tensor: spec.TensorSpec, batched: bool) -> str:
    dims: Sequence[int] = tensor.shape
    reshape = ""
    if batched:
        if tensor.shape[0] != -1:
            raise errors.SpecError(
                f"batching needs -1 as the first dimension (the batch), not {tensor.shape[0]}"
            )
        dims = tensor.shape[1:]
        if not dims:
            # A tensor of shape [batch] only: Triton wants non-empty dims, so [1] reshaped away.
            dims, reshape = [1], " reshape: { shape: [ ] }"
    fields = (
        f"name: {_quote(tensor.name)} data_type: {triton_dtype(tensor.dtype)} "
        f"dims: [ {', '.join(str(d) for d in dims)} ]{reshape}"
    )
    return f"  {{ {fields} }}"


def _list(field: str, blocks: list[str]) -> list[str]:
    return [f"{field} [", ",\n".join(blocks), "]"]


def _dynamic_batching(batching: spec.Batching) -> list[str]:
    preferred = sorted(set(batching.preferred_batch_sizes or []))
    lines = ["dynamic_batching {"]
    if preferred:
        lines.append(f"  preferred_batch_size: [ {', '.join(str(s) for s in preferred)} ]")
    lines += [
        f"  max_queue_delay_microseconds: {round(batching.max_queue_delay_ms * 1000)}",
        f"  default_queue_policy {{ max_queue_size: {batching.max_queue_size} }}",
        "}",
    ]
    return lines


def _instance_group(hardware: spec.Hardware) -> list[str]:
    # One instance per visible GPU (Triton places `count` instances on *each* GPU when `gpus`
    # is unset, and the pod sees exactly the GPUs it requested); one CPU instance, because
    # onnxruntime already spreads a run over the container's cores.
    kind = "KIND_CPU" if hardware.accelerator == "none" else "KIND_GPU"
    return [f"instance_group [ {{ count: 1 kind: {kind} }} ]"]


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
