"""How mlops metadata is laid out in MLflow: tag keys, the semver alias, decoding a version.

Pure functions over MLflow entities (duck-typed), so the layout is testable without a store.
A version is visible to mlops only once its `mlops.state` tag says `ready`.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import semver
from pydantic import ValidationError

from mlops import errors
from mlops.spec import models as spec
from mlops.state import models as state

# "pending:HOST:PID" while registering (who, so leftovers of dead processes are recognised),
# "ready" once every piece is stored. One tag, so marking ready is a single write.
STATE = "mlops.state"
SEMVER = "mlops.semver"
SHA256 = "mlops.sha256"
SIGNATURE = "mlops.signature"
BASELINE = "mlops.baseline"
STATS = "mlops.stats"  # artifact file name of the feature statistics, when any
REJECTED = "mlops.rejected"  # the reason; present = rejected
CONFORMANCE = "mlops.conformance"
# The pushed image (docs/images.md): the manifest digest as the OCI registry returned it, and
# the reference deployments use. Unprefixed: other tools read them (`image_digest` is the name
# the image issue gives it).
IMAGE_DIGEST = "image_digest"
IMAGE_REFERENCE = "image_reference"
PENDING = "pending:"
READY = "ready"

MODEL_FILE = "model.onnx"
STATS_FILE = "feature_stats.json"
ARTIFACT_DIR = "model"

SEMVER_ALIAS_PREFIX = "semver-"
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_ALIAS = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_TAG_MAX = 5000  # MLflow allows more on versions, but stay well inside every backend's column


def check_name(name: str) -> str:
    """Model names are DNS-1123 labels; checked before they go anywhere near a filter string."""
    if not isinstance(name, str) or not _DNS1123.match(name):
        raise errors.UsageError(f"invalid model name {name!r}: use a DNS-1123 label")
    return name


def check_semver(text: str) -> str:
    try:
        semver.Version.parse(text)
    except (ValueError, TypeError):
        raise errors.UsageError(f"invalid semantic version {text!r} (e.g. 2.3.1)") from None
    return text


def check_alias(alias: str) -> str:
    """User-facing aliases (stable, canary, ...): MLflow's character set, minus its reserved
    names (`latest`, `v<N>`) and our own semver aliases."""
    if (
        not _ALIAS.match(alias)
        or alias.lower() == "latest"
        or re.fullmatch(r"[vV]\d+", alias)
        or alias.startswith(SEMVER_ALIAS_PREFIX)
    ):
        raise errors.UsageError(f"invalid alias {alias!r}")
    return alias


def semver_alias(text: str) -> str:
    """`2.3.1-rc.1+b.5` -> `semver-2_3_1-rc_1__b_5`. Injective: semver has no `_` and no
    empty identifiers, so `_` (from `.`) and `__` (from `+`) cannot be confused; MLflow
    aliases allow only [A-Za-z0-9_-] and reserve `v<N>`."""
    check_semver(text)
    return SEMVER_ALIAS_PREFIX + text.replace("+", "__").replace(".", "_")


def is_semver_alias(alias: str) -> bool:
    return alias.startswith(SEMVER_ALIAS_PREFIX)


def clip(text: str) -> str:
    return text if len(text) <= _TAG_MAX else text[: _TAG_MAX - 3] + "..."


def version_tags(
    semver_text: str, sha256: str, signature: spec.Signature, baseline: spec.Baseline, stats: bool
) -> dict[str, str]:
    tags = {
        SEMVER: semver_text,
        SHA256: sha256,
        SIGNATURE: signature.model_dump_json(),
        BASELINE: baseline.model_dump_json(),
    }
    if stats:
        tags[STATS] = STATS_FILE
    return tags


def tags_of(entity: Any) -> dict[str, str]:
    """MLflow returns tags as a dict on some entities and a list on others."""
    tags = getattr(entity, "tags", None) or {}
    if isinstance(tags, dict):
        return {str(k): str(v) for k, v in tags.items()}
    return {str(t.key): str(t.value) for t in tags}


def pending_owner(entity: Any) -> str:
    """`HOST:PID` of the process registering this version ("" when it is not pending)."""
    value = tags_of(entity).get(STATE, "")
    return value.removeprefix(PENDING) if value.startswith(PENDING) else ""


def decode(entity: Any, tags: dict[str, str] | None = None) -> state.RegistryVersion | None:
    """A ready mlops version, or None for pending versions and versions mlops did not write.
    Malformed metadata is a RegistryError: silently skipping it would hide a real version.
    `tags` overrides the entity's own (used right after a write, saving a read)."""
    tags = tags_of(entity) if tags is None else tags
    if tags.get(STATE) != READY or SEMVER not in tags:
        return None
    try:
        conformance = json.loads(tags[CONFORMANCE]) if CONFORMANCE in tags else None
        status = state.VersionStatus.REGISTERED
        if REJECTED in tags:
            status = state.VersionStatus.REJECTED
        elif isinstance(conformance, dict) and conformance.get("passed") is True:
            status = state.VersionStatus.CONFORMANT
        created = getattr(entity, "creation_timestamp", None)
        return state.RegistryVersion(
            name=entity.name,
            semver=tags[SEMVER],
            registry_version=str(entity.version),
            sha256=tags[SHA256],
            artifact_uri=f"{entity.source.rstrip('/')}/{MODEL_FILE}",
            signature=spec.Signature.model_validate_json(tags[SIGNATURE]),
            baseline=spec.Baseline.model_validate_json(tags[BASELINE]),
            status=status,
            rejected_reason=tags.get(REJECTED),
            conformance=conformance if isinstance(conformance, dict) else None,
            image_digest=_image_digest(tags.get(IMAGE_DIGEST)),
            image_reference=_image_reference(tags.get(IMAGE_REFERENCE)),
            created_at=(
                datetime.fromtimestamp(created / 1000, tz=UTC).isoformat() if created else None
            ),
        )
    except (KeyError, ValueError, ValidationError) as exc:
        raise errors.RegistryError(
            f"registry metadata of {entity.name} version {entity.version} is corrupt: {exc}"
        ) from None


_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_REFERENCE = re.compile(r"^[a-z0-9][a-z0-9._:/-]{0,254}@sha256:[0-9a-f]{64}$")


def _image_digest(value: str | None) -> str | None:
    """A recorded digest, checked (a tag anyone could have set by hand)."""
    if value is not None and not _DIGEST.match(value):
        raise ValueError(f"tag {IMAGE_DIGEST} {value[:80]!r} is not sha256:<64 hex>")
    return value


def _image_reference(value: str | None) -> str | None:
    if value is not None and not _REFERENCE.match(value):
        raise ValueError(f"tag {IMAGE_REFERENCE} {value[:80]!r} is not REPOSITORY@sha256:<64 hex>")
    return value


def image_tags(digest: str, reference: str) -> dict[str, str]:
    """The tags of a pushed image; the reference must end with the digest."""
    _image_digest(digest)
    _image_reference(reference)
    if not reference.endswith("@" + digest):
        raise errors.UsageError(f"image reference {reference!r} does not carry digest {digest}")
    return {IMAGE_DIGEST: digest, IMAGE_REFERENCE: reference}


def build_model(
    name: str, versions: list[state.RegistryVersion], aliases: dict[str, str]
) -> state.RegistryModel:
    """`aliases` maps alias -> MLflow version number; the result maps alias -> semver and keeps
    only aliases that point at a visible version (semver aliases are an implementation detail)."""
    by_number = {v.registry_version: v.semver for v in versions}
    visible = {
        alias: by_number[number]
        for alias, number in sorted(aliases.items())
        if not is_semver_alias(alias) and number in by_number
    }
    ordered = sorted(versions, key=lambda v: semver.Version.parse(v.semver))
    return state.RegistryModel(name=name, versions={v.semver: v for v in ordered}, aliases=visible)
