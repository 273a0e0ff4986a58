"""Artifact references a user may give, checked before anything is read or stored.

MLflow's own path-traversal CVEs (CVE-2023-1177, CVE-2023-6909, CVE-2024-1483, CVE-2024-3848)
came from `..`, `file://` sources, percent-encoding and `#`/`?` smuggled into URIs. We accept
exactly two shapes: a workspace file, or `models:/NAME/VERSION` / `models:/NAME@ALIAS`.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from mlops import errors, workspace

MODELS_SCHEME = "models:/"
_MODELS_URI = re.compile(
    r"^models:/(?P<name>[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)"
    r"(?:/(?P<version>[0-9A-Za-z.+-]{1,128})|@(?P<alias>[A-Za-z0-9_-]{1,255}))$"
)


@dataclass(frozen=True)
class ModelsUri:
    """`models:/NAME/VERSION` (an MLflow version number or a semver) or `models:/NAME@ALIAS`."""

    name: str
    version: str | None
    alias: str | None


def _unquoted(text: str) -> str:
    # Decode repeatedly: `%252e%252e` is `..` after two rounds.
    for _ in range(5):
        decoded = urllib.parse.unquote(text)
        if decoded == text:
            return text
        text = decoded
    raise errors.ArtifactError(f"artifact reference {text!r} is encoded too many times")


def parse_models_uri(ref: str) -> ModelsUri:
    if _unquoted(ref) != ref:
        raise errors.ArtifactError(f"artifact URI {ref!r} must not be percent-encoded")
    match = _MODELS_URI.match(ref)
    if not match:
        raise errors.ArtifactError(
            f"artifact URI {ref!r} is not models:/NAME/VERSION or models:/NAME@ALIAS "
            "(no '#', '?', '..' or extra path)"
        )
    version = match.group("version")
    if version is not None and (".." in version or version.startswith(".")):
        raise errors.ArtifactError(f"artifact URI {ref!r} has an invalid version")
    return ModelsUri(name=match.group("name"), version=version, alias=match.group("alias"))


def local_path(ref: str | Path, root: Path | None, *, what: str = "artifact") -> Path:
    """A local file reference resolved (symlinks too) and kept inside `root` when given.

    Relative paths are relative to `root` (plan payloads carry workspace paths)."""
    text = str(ref)
    if "\x00" in text:
        raise errors.ArtifactError(f"{what} path contains a NUL byte")
    # A scheme of any kind (file://, http://, s3://) is not a local path: refuse rather than
    # guess, and never let a fragment or query hide part of a path.
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", text) or "#" in text or "?" in text:
        raise errors.ArtifactError(
            f"{what} {text!r} is not a workspace path: URIs, '#' and '?' are not accepted"
        )
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
