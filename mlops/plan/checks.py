"""Refusals the diff makes before planning a version: rejected versions, breaking signatures."""

from __future__ import annotations

import semver

from mlops.spec import models as spec
from mlops.state import models as state


def rejected(name: str, version: str, registered: state.RegistryVersion | None) -> str | None:
    if registered is None or registered.status is not state.VersionStatus.REJECTED:
        return None
    why = f" ({registered.rejected_reason})" if registered.rejected_reason else ""
    return (
        f"{name}: version {version} was rejected{why}; publish the fix under a new semantic version"
    )


def checksum(
    name: str, model: spec.ModelSection, registered: state.RegistryVersion | None
) -> str | None:
    """Released versions are immutable: a pinned sha256 must match what the registry holds."""
    if registered is None or model.sha256 is None or model.sha256 == registered.sha256:
        return None
    return (
        f"{name}: version {model.version} is registered with sha256 {registered.sha256[:12]}… "
        f"but the spec pins {model.sha256[:12]}…; released versions are immutable"
    )


def changed_bytes(
    name: str,
    model: spec.ModelSection,
    registered: state.RegistryVersion | None,
    artifact: str,
    artifact_sha256: str | None,
) -> str | None:
    """Released versions are immutable, pinned or not: the spec's file must hold the bytes the
    registry recorded for its semver."""
    if registered is None or artifact_sha256 is None or artifact_sha256 == registered.sha256:
        return None
    return (
        f"{name}: version {model.version} is registered with sha256 {registered.sha256} but "
        f"{artifact} has sha256 {artifact_sha256}; released versions are immutable: "
        "publish changed bytes under a new semantic version"
    )


def breaking_signature(
    name: str, old_version: str, old: spec.Signature, new_version: str, new: spec.Signature
) -> str | None:
    """A plan error when the signature breaks callers without a major version bump."""
    if semver.Version.parse(old_version).major != semver.Version.parse(new_version).major:
        return None
    problem = signature_break(old, new)
    if problem is None:
        return None
    return (
        f"{name}: breaking signature change from {old_version} to {new_version}: {problem}; "
        "a breaking change needs a major version bump"
    )


def signature_break(old: spec.Signature, new: spec.Signature) -> str | None:
    """First incompatibility between two signatures, naming the tensor; None if compatible."""
    for kind, before, after in (
        ("input", old.inputs, new.inputs),
        ("output", old.outputs, new.outputs),
    ):
        now = {t.name: t for t in after}
        for tensor in before:
            current = now.get(tensor.name)
            if current is None:
                return f"{kind} '{tensor.name}' removed"
            if current.dtype != tensor.dtype:
                return f"{kind} '{tensor.name}' dtype {tensor.dtype} -> {current.dtype}"
            # Inputs may only widen (accept all that was accepted); outputs may only narrow.
            wide, narrow = (current, tensor) if kind == "input" else (tensor, current)
            if not _accepts(wide.shape, narrow.shape):
                return f"{kind} '{tensor.name}' shape {tensor.shape} -> {current.shape}"
    known = {t.name for t in old.inputs}
    for tensor in new.inputs:
        if tensor.name not in known:
            # Existing callers do not send it.
            return f"input '{tensor.name}' added"
    return None


def _accepts(wide: list[int], narrow: list[int]) -> bool:
    if len(wide) != len(narrow):
        return False
    return all(w == -1 or w == n for w, n in zip(wide, narrow, strict=True))
