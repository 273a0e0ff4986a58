"""Artifact references a user may give, checked before anything is read or stored.

The rules are `mlops.spec.refs` (the same `validate` applies, so a spec that validates is
never refused here for its reference): a workspace file, or `models:/NAME/VERSION` /
`models:/NAME@ALIAS`. Here they raise ArtifactError, and local paths are resolved (symlinks
too) inside the workspace.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from mlops import errors, workspace
from mlops.spec import refs

MODELS_SCHEME = refs.MODELS_SCHEME
ModelsUri = refs.ModelsUri


def _unquoted(text: str) -> str:
    try:
        return refs.unquoted(text)
    except ValueError as exc:
        raise errors.ArtifactError(str(exc)) from None


def parse_models_uri(ref: str) -> ModelsUri:
    try:
        return refs.parse_models_uri(ref)
    except ValueError as exc:
        raise errors.ArtifactError(str(exc)) from None


def local_path(ref: str | Path, root: Path | None, *, what: str = "artifact") -> Path:
    """A local file reference resolved (symlinks too) and kept inside `root` when given.

    Relative paths are relative to `root` (plan payloads carry workspace paths)."""
    text = str(ref)
    try:
        # A scheme of any kind (file://, http://, s3://) is not a local path: refuse rather
        # than guess, and never let a fragment or query hide part of a path.
        refs.check_local(text, what)
    except ValueError as exc:
        raise errors.ArtifactError(str(exc)) from None
    path = Path(text)
    if root is None:
        return path.resolve()
    try:
        return workspace.resolve_inside(path, root, what=what)
    except errors.UsageError as exc:
        raise errors.ArtifactError(exc.message) from None


def check_stored_source(source: str, artifact_root: Path | None) -> None:
    """A version's source as read back from the registry: refuse traversal tricks, and for
    local stores require it inside our artifact root (someone may have edited the registry)."""
    decoded = _unquoted(source)
    parsed = urllib.parse.urlparse(decoded)
    if parsed.fragment or parsed.query or ".." in decoded.split("/") or "\x00" in decoded:
        raise errors.RegistryError(f"registry source {source!r} is not a plain artifact URI")
    if parsed.scheme in ("", "file") and artifact_root is not None:
        if parsed.netloc not in ("", "localhost"):
            raise errors.RegistryError(f"registry source {source!r} names a remote host")
        try:
            workspace.resolve_inside(Path(parsed.path), artifact_root, what="registry source")
        except errors.UsageError as exc:
            raise errors.RegistryError(exc.message) from None
