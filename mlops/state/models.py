"""`LiveState`: what the registry, the serving runtime and the traffic split hold right now.

Providers fill these models during refresh; the diff reads them and nothing else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlops.spec import models as spec

STABLE = "stable"
CANARY = "canary"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class VersionStatus(StrEnum):
    REGISTERED = "registered"  # artifact stored, checksum and signature recorded
    CONFORMANT = "conformant"  # passed the conformance test
    REJECTED = "rejected"  # rolled back or failed conformance; refused unless semver changes


class FeatureStats(_Frozen):
    """Training distribution of one input feature (drift reports compare against it)."""

    name: str
    mean: float
    std: float
    count: int = 0  # finite values the statistics were computed from
    quantiles: dict[str, float] = Field(default_factory=dict)  # "p01", "p25", "p50", ...
    histogram: list[float] = Field(default_factory=list)  # bin counts
    bin_edges: list[float] = Field(default_factory=list)


class RegistryVersion(_Frozen):
    name: str
    semver: str
    registry_version: str  # the registry's own id (MLflow: an integer as text)
    sha256: str
    artifact_uri: str
    signature: spec.Signature
    baseline: spec.Baseline
    status: VersionStatus = VersionStatus.REGISTERED
    rejected_reason: str | None = None
    conformance: dict[str, Any] | None = None  # accuracy, p50_ms, p99_ms, passed, at
    created_at: str | None = None
    # The pushed image's manifest digest (sha256:...) and reference (REPOSITORY@sha256:...),
    # as recorded by push_image (docs/images.md); None: no image recorded.
    image_digest: str | None = None
    image_reference: str | None = None


class RegistryModel(_Frozen):
    name: str
    versions: dict[str, RegistryVersion] = Field(default_factory=dict)  # by semver
    aliases: dict[str, str] = Field(default_factory=dict)  # "stable"/"canary" -> semver

    @property
    def stable(self) -> str | None:
        return self.aliases.get(STABLE)

    @property
    def canary(self) -> str | None:
        return self.aliases.get(CANARY)


class ShadowRoute(_Frozen):
    version: str
    percent: int = Field(ge=0, le=100)


class RuntimeModel(_Frozen):
    """One model as the serving runtime sees it (agreed across replicas)."""

    name: str
    loaded: dict[str, str] = Field(default_factory=dict)  # semver -> state ("ready", "loading")
    weights: dict[str, int] = Field(default_factory=dict)  # semver -> weight
    shadow: ShadowRoute | None = None
    generation: int = 0
    replicas: int = 0  # declared replica processes
    replicas_alive: int = 0
    config: dict[str, Any] = Field(default_factory=dict)  # batching etc. of the loaded versions
    # semver -> sha256 of the artifact each loaded version serves, one entry per distinct
    # digest the replicas report (more than one: they disagree). Absent: the runtime cannot
    # say (the diff then has nothing to compare).
    served_sha256: dict[str, list[str]] = Field(default_factory=dict)


class EngineState(_Frozen):
    """The local target's engine: one set of worker processes serves every model, so its
    worker count is shared (docs/engine.md, "Shared engine")."""

    replicas: int = Field(default=0, ge=0)  # worker processes; 0: not running
    models: list[str] = Field(default_factory=list)  # every model it serves, sorted


class ImageState(_Frozen):
    """A model version's image as the OCI registry holds it, found by the content tag that
    carries the artifact's sha256 (docs/images.md)."""

    semver: str
    sha256: str | None = None  # the artifact bytes looked for; None: not known yet
    repository: str  # HOST[:PORT]/PATH/MODEL
    digest: str | None = None  # the manifest digest; None: no image of these bytes
    settings_sha256: str | None = None  # the image's io.mlops.settings.sha256 label


def settings_digest(settings: Mapping[str, Any]) -> str:
    """sha256 of a version's engine settings as an image records them (its
    io.mlops.settings.sha256 label): sorted keys, so equal settings digest equal."""
    blob = json.dumps(dict(settings), indent=2, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


class ImagesState(_Frozen):
    """mlops.yaml's `images:` and what the OCI registry holds of the specs' versions."""

    base: str  # the pinned base (images.base)
    repository: str  # images.repository; a model's images are REPOSITORY/MODEL
    models: dict[str, ImageState] = Field(default_factory=dict)  # the spec's version, by model


class AppliedRecord(_Frozen):
    """What mlops itself last set for a model: lets plan report changes made outside mlops."""

    loaded: list[str] = Field(default_factory=list)
    weights: dict[str, int] = Field(default_factory=dict)
    aliases: dict[str, str] = Field(default_factory=dict)


class LiveState(_Frozen):
    registry: dict[str, RegistryModel] = Field(default_factory=dict)
    runtime: dict[str, RuntimeModel] = Field(default_factory=dict)
    runtime_reachable: bool = True
    # The shared engine of the local target; None where each model has its own replicas
    # (kubernetes) or the runtime cannot say.
    engine: EngineState | None = None
    # Requests per second per model, for estimates only: not part of the fingerprint.
    traffic_rate: dict[str, float] = Field(default_factory=dict)
    last_applied: dict[str, AppliedRecord] = Field(default_factory=dict)
    # Workspaces with `images:` in mlops.yaml only; None: no images are built. Not part of
    # the fingerprint: the image steps look in the OCI registry again before they act.
    images: ImagesState | None = None

    def fingerprint(self) -> str:
        """Digest of everything the plan depends on (traffic rates excluded: they always move)."""
        # No engine (kubernetes), or one not running (`runtime_reachable` already says so),
        # leaves the digest as it was before the engine was recorded.
        running = self.engine is not None and self.engine.replicas > 0
        skip = {"traffic_rate", "images"} | (set() if running else {"engine"})
        payload = self.model_dump(mode="json", exclude=skip)
        # A version without a recorded image digests as before images existed.
        for model in payload["registry"].values():
            for version in model["versions"].values():
                for key in ("image_digest", "image_reference"):
                    if version.get(key) is None:
                        version.pop(key, None)
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return "sha256:" + hashlib.sha256(blob).hexdigest()
