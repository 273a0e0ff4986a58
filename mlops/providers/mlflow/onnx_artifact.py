"""Reading an ONNX artifact: checksum, signature from the graph, checks against the spec.

Only the graph's declared interface is read (no inference): the registry records it and
refuses an artifact whose interface differs from what the spec promises.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from mlops import errors
from mlops.spec import models as spec

MAX_ARTIFACT_BYTES = 2 * 1024**3  # protobuf's own limit for a single-file model

# onnx.TensorProto.DataType value -> V2 dtype. Types with no V2 name (bfloat16, complex,
# float8) are refused rather than silently mapped.
_ELEM_TYPES: dict[int, spec.DType] = {
    1: spec.DType.FP32,
    2: spec.DType.UINT8,
    3: spec.DType.INT8,
    4: spec.DType.UINT16,
    5: spec.DType.INT16,
    6: spec.DType.INT32,
    7: spec.DType.INT64,
    8: spec.DType.BYTES,  # STRING
    9: spec.DType.BOOL,
    10: spec.DType.FP16,
    11: spec.DType.FP64,
    12: spec.DType.UINT32,
    13: spec.DType.UINT64,
}


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed so large artifacts do not load into memory."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def load_model(path: Path, *, shown: str | None = None) -> Any:
    """Parse and check an ONNX file; ArtifactError when it is missing or not a usable model.
    `shown` is how messages name the file (the user's path when `path` is a private copy).
    Every message is one line: these reach the CLI as they are."""
    import onnx  # heavy: imported only when an artifact is read

    name = repr(str(path) if shown is None else shown)
    if not path.is_file():
        raise errors.ArtifactError(f"artifact {name} does not exist or is not a file")
    size = path.stat().st_size
    if size == 0:
        raise errors.ArtifactError(f"artifact {name} is empty, not an ONNX model")
    if size > MAX_ARTIFACT_BYTES:
        raise errors.ArtifactError(f"artifact {name} is larger than 2 GiB")
    try:
        # External data stays unread: it would let a model point at files outside the artifact.
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # protobuf raises several unrelated types on garbage
        raise errors.ArtifactError(
            f"artifact {name} is not an ONNX model: it does not parse as one "
            "(another format, or a truncated file)"
        ) from None
    # An empty or random file can still decode as an empty ModelProto: require a real graph.
    if model.ir_version <= 0 or not model.graph.node or not model.graph.output:
        raise errors.ArtifactError(
            f"artifact {name} is not an ONNX model: it has no graph "
            "(another format, or a truncated file)"
        )
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise errors.ArtifactError(
                f"artifact {name} uses external data ({tensor.name!r}); "
                "export a self-contained model"
            )
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise errors.ArtifactError(
            f"artifact {name} is not a valid ONNX model: {_one_line(str(exc))}"
        ) from None
    return model


def _one_line(text: str, limit: int = 300) -> str:
    """The checker's multi-line report as one line (its first lines carry the reason)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _tensor_spec(value_info: Any, kind: str) -> spec.TensorSpec:
    which = value_info.type.WhichOneof("value")
    if which != "tensor_type":
        raise errors.ArtifactError(
            f"{kind} {value_info.name!r} is a {which}, not a tensor "
            "(for scikit-learn classifiers export with options={'zipmap': False})"
        )
    tensor = value_info.type.tensor_type
    dtype = _ELEM_TYPES.get(tensor.elem_type)
    if dtype is None:
        raise errors.ArtifactError(
            f"{kind} {value_info.name!r} has ONNX element type {tensor.elem_type}, "
            "which has no V2 dtype"
        )
    # A dimension with a symbolic name (or none at all) accepts any size: -1.
    shape = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
    if not tensor.HasField("shape") or not shape:
        raise errors.ArtifactError(f"{kind} {value_info.name!r} has no shape (scalar or unknown)")
    return spec.TensorSpec(name=value_info.name, dtype=dtype, shape=shape)


def signature_of(model: Any) -> spec.Signature:
    """The graph's interface. Initializers listed as inputs (old exporters) are not inputs."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [_tensor_spec(v, "input") for v in model.graph.input if v.name not in initializers]
    outputs = [_tensor_spec(v, "output") for v in model.graph.output]
    try:
        return spec.Signature(inputs=inputs, outputs=outputs)
    except ValueError as exc:
        raise errors.ArtifactError(f"the model's interface is unusable: {exc}") from None


def read_signature(path: Path) -> spec.Signature:
    return signature_of(load_model(path))


def _dims(shape: list[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def signature_problems(declared: spec.Signature, actual: spec.Signature) -> list[str]:
    """Every difference, each naming the tensor. A model dim of -1 accepts any declared size;
    a declared -1 against a fixed model dim is a mismatch (the spec would promise too much)."""
    problems: list[str] = []
    for kind, want, have in (
        ("input", declared.inputs, actual.inputs),
        ("output", declared.outputs, actual.outputs),
    ):
        by_name = {t.name: t for t in have}
        for tensor in want:
            got = by_name.pop(tensor.name, None)
            if got is None:
                problems.append(
                    f"{kind} {tensor.name!r}: declared in the spec, missing in the model"
                )
                continue
            if got.dtype != tensor.dtype:
                problems.append(
                    f"{kind} {tensor.name!r}: dtype {tensor.dtype.value} in the spec, "
                    f"{got.dtype.value} in the model"
                )
            compatible = len(got.shape) == len(tensor.shape) and all(
                m == -1 or m == s for m, s in zip(got.shape, tensor.shape, strict=True)
            )
            if not compatible:
                problems.append(
                    f"{kind} {tensor.name!r}: shape {_dims(tensor.shape)} in the spec, "
                    f"{_dims(got.shape)} in the model"
                )
        for extra in by_name:
            problems.append(f"{kind} {extra!r}: in the model, not declared in the spec")
    return problems


def check_signature(declared: spec.Signature, actual: spec.Signature) -> None:
    problems = signature_problems(declared, actual)
    if problems:
        raise errors.SignatureMismatchError("signature mismatch: " + "; ".join(problems))
