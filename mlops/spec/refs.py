"""The artifact references a spec may give, checked where specs are validated. Pure: no I/O.

MLflow's own path-traversal CVEs (CVE-2023-1177, CVE-2023-6909, CVE-2024-1483, CVE-2024-3848)
came from `..`, `file://` sources, percent-encoding and `#`/`?` smuggled into URIs. Exactly two
shapes are accepted: a workspace path, or `models:/NAME/VERSION` / `models:/NAME@ALIAS`. Each
check raises ValueError with one message that says what is wrong; `validate` shows it at the
field, and `mlops.providers.mlflow.artifact_refs` applies the same checks again before reading.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

import semver

MODELS_SCHEME = "models:/"
MAX_LENGTH = 4096
# Decoding rounds before a reference counts as encoded too many times (`%252e` takes two).
MAX_DECODE_ROUNDS = 5

_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_VERSION = re.compile(r"^[0-9A-Za-z.+-]{1,128}$")
_ALIAS = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
FORMS = "models:/NAME/VERSION or models:/NAME@ALIAS"


@dataclass(frozen=True)
class ModelsUri:
    """`models:/NAME/VERSION` (an MLflow version number or a semver) or `models:/NAME@ALIAS`."""

    name: str
    version: str | None
    alias: str | None


def unquoted(text: str) -> str:
    """`text` percent-decoded until it no longer changes (`%252e%252e` is `..` after two)."""
    for _ in range(MAX_DECODE_ROUNDS):
        decoded = urllib.parse.unquote(text)
        if decoded == text:
            return text
        text = decoded
    raise ValueError(f"{text!r} is percent-encoded too many times")


def scheme(text: str) -> str | None:
    """The URI scheme `text` starts with (`file`, `s3`, `models`, also `C` of `C:/`), or None."""
    match = _SCHEME.match(text)
    return match.group("scheme") if match else None


def is_models_uri(text: str) -> bool:
    return (scheme(text) or "").lower() == "models"


def check_artifact(text: str) -> str:
    """A spec's `model.artifact`: a models:/ URI or a workspace path; one message if neither."""
    _common(text, "artifact")
    found = scheme(text)
    if found is None:
        return check_local(text, "artifact")
    if found.lower() == "models":
        parse_models_uri(text)
        return text
    raise ValueError(
        f"{text!r} is a {found}: URI; an artifact is a workspace path or a {FORMS} URI"
    )


def check_local(text: str, what: str) -> str:
    """A workspace path as text: no URI scheme, no '#' or '?' (they would hide part of it)."""
    _common(text, what)
    found = scheme(text)
    if found is not None:
        raise ValueError(f"{what} {text!r} is a {found}: URI, not a file path inside the workspace")
    if "#" in text or "?" in text:
        raise ValueError(f"{what} {text!r} contains '#' or '?': not a plain workspace path")
    return text


def is_local(text: str) -> bool:
    """True when `text` passes `check_local` (only those are resolved as paths)."""
    try:
        check_local(text, "path")
    except ValueError:
        return False
    return True


def parse_models_uri(ref: str) -> ModelsUri:
    _common(ref, "artifact")
    decoded = unquoted(ref)
    if decoded != ref:
        raise ValueError(f"models:/ URI {ref!r} must not be percent-encoded (it reads {decoded!r})")
    if not ref.startswith(MODELS_SCHEME):
        raise ValueError(f"{ref!r} is not {FORMS}")
    if "#" in ref or "?" in ref:
        raise ValueError(f"models:/ URI {ref!r} must not contain '#' or '?'")
    rest = ref[len(MODELS_SCHEME) :]
    if "@" in rest:
        name, alias = rest.split("@", 1)
        _check_name(ref, name)
        _check_alias(ref, alias)
        return ModelsUri(name=name, version=None, alias=alias)
    parts = rest.split("/")
    if len(parts) != 2:
        raise ValueError(f"models:/ URI {ref!r} is not {FORMS} (one name, one version)")
    name, version = parts
    _check_name(ref, name)
    _check_version(ref, version)
    return ModelsUri(name=name, version=version, alias=None)


def _common(text: str, what: str) -> None:
    if "\x00" in text:
        raise ValueError(f"{what} contains a NUL byte")
    if len(text) > MAX_LENGTH:
        raise ValueError(f"{what} is longer than {MAX_LENGTH} characters")


def _check_name(ref: str, name: str) -> None:
    if not _NAME.match(name):
        raise ValueError(
            f"models:/ URI {ref!r}: {name!r} is not a model name (a DNS-1123 label: "
            "lowercase letters, digits and '-')"
        )


def _check_version(ref: str, version: str) -> None:
    if version.isdigit():
        return  # an MLflow version number
    valid = _VERSION.match(version) is not None and ".." not in version
    if valid:
        try:
            semver.Version.parse(version)
        except ValueError:
            valid = False
    if not valid:
        raise ValueError(
            f"models:/ URI {ref!r}: {version!r} is neither a semantic version nor an "
            "MLflow version number"
        )


def _check_alias(ref: str, alias: str) -> None:
    reserved = (
        alias.lower() == "latest"
        or re.fullmatch(r"[vV]\d+", alias) is not None
        or alias.startswith("semver-")
    )
    if not _ALIAS.match(alias) or reserved:
        raise ValueError(
            f"models:/ URI {ref!r}: {alias!r} is not an alias (letters, digits, '_' and '-'; "
            "not 'latest', 'vN' or 'semver-...')"
        )
