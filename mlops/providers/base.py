"""One narrow Protocol per backend kind. Implementations live one subpackage per backend;
`factory` picks. Every method the controller calls on a provider is declared here.

Every read that the planner makes is batched: one call per provider, never one per model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from mlops.spec import models as spec
from mlops.state import models as state


@runtime_checkable
class Registry(Protocol):
    """The source of truth for which versions may be served (MLflow Model Registry)."""

    def refresh(self, names: Sequence[str] | None = None) -> dict[str, state.RegistryModel]:
        """All models (or just `names`) with versions and aliases, in one batched read."""
        ...

    def register(
        self,
        deployment: spec.ModelDeployment,
        artifact: Path | str,
        validation: Path | None,
    ) -> state.RegistryVersion:
        """Register `deployment.spec.model.version` atomically; a no-op if identical.

        `artifact` is a workspace path (relative paths are relative to the workspace) or a
        `models:/NAME/VERSION` / `models:/NAME@ALIAS` URI of an already registered version."""
        ...

    def get_version(self, name: str, semver: str) -> state.RegistryVersion | None: ...

    def artifact_path(self, name: str, semver: str) -> Path:
        """A local file with the version's artifact (downloaded if the store is remote)."""
        ...

    def training_stats(self, name: str, semver: str) -> list[state.FeatureStats]: ...

    def set_alias(self, name: str, alias: str, semver: str) -> None: ...

    def delete_alias(self, name: str, alias: str) -> None: ...

    def mark_rejected(self, name: str, semver: str, reason: str) -> None: ...

    def record_conformance(self, name: str, semver: str, result: Mapping[str, Any]) -> None: ...

    def record_image(self, name: str, semver: str, digest: str, reference: str) -> None:
        """Record the pushed image of a version: its manifest digest (`sha256:...`) and its
        reference (`REPOSITORY@sha256:...`), as read back from the OCI registry."""
        ...


@runtime_checkable
class Runtime(Protocol):
    """A serving target: which versions are loaded where, and the traffic split."""

    def refresh(self, names: Sequence[str] | None = None) -> dict[str, state.RuntimeModel]:
        """Loaded versions, weights and routing generation per model, in one read per replica."""
        ...

    def reachable(self) -> bool: ...

    def ensure_running(self, replicas: int) -> None:
        """Start the engine processes if they are not running (local target). Never restarts
        or rescales a running engine: that is `scale`, a step of its own in the plan."""
        ...

    def engine(self) -> state.EngineState | None:
        """The engine every model shares (local target): its worker count (0: not running) and
        the models it serves. None where each model has replicas of its own (kubernetes)."""
        ...

    def scale(self, replicas: int) -> None:
        """Give the shared engine `replicas` workers without losing a request (new workers
        serve every version before they take traffic, surplus ones drain first)."""
        ...

    def load(self, name: str, semver: str, artifact: Path, settings: Mapping[str, Any]) -> None:
        """Load a version with no traffic; returns once every replica reports it ready."""
        ...

    def unload(self, name: str, semver: str) -> None:
        """Drain and unload a version on every replica. Idempotent."""
        ...

    def set_traffic(
        self,
        name: str,
        weights: Mapping[str, int],
        shadow: state.ShadowRoute | None,
        *,
        rollback: bool = False,
    ) -> int:
        """Apply a weight table atomically on every replica; returns the new generation once
        every replica reads it back. `rollback`: the table takes a version out for good; it
        must survive a restart of the runtime even if no replica confirms it (yet)."""
        ...

    def inference_url(self) -> str: ...

    @property
    def request_rates(self) -> Mapping[str, float]:
        """Requests/s per model as of the last `refresh`, for runtimes that measure traffic
        themselves (the local engine); empty where the caller measures it (kubernetes)."""
        ...

    def worker_admin_urls(self) -> list[str]:
        """The admin address of every engine worker, for the built-in metrics scraper; empty
        when the workers are not reachable from here (kubernetes pods)."""
        ...

    def served_artifact(self, name: str, semver: str) -> Path | None:
        """The runtime's own copy of a version's artifact, for conformance to hash what is
        actually served; None when there is no local copy (pods fetch their own)."""
        ...


@dataclass(frozen=True)
class Sample:
    """A raw metric reading for one version over a window. `error` set = backend failure."""

    value: float | None
    requests: float
    error: str | None = None


# Which of a version's requests a gate judges (see Metrics.sample).
Traffic = Literal["routed", "shadow"]


@runtime_checkable
class Metrics(Protocol):
    """Reads gate metrics (Prometheus, or a built-in scraper of the engine's /metrics)."""

    def sample(
        self,
        model: str,
        version: str,
        gate: spec.Gate,
        window_seconds: float,
        traffic: Traffic = "routed",
    ) -> Sample:
        """Measure one gate's metric for one version. Never raises for backend failures:
        returns a Sample with `error` set. `traffic` chooses which requests are judged:
        `routed` (what the router sent it; never direct calls) or `shadow` (what it ran as
        a shadow: mirrored copies, or a gateway's mirror arriving as routed)."""
        ...


@runtime_checkable
class ReportsCluster(Protocol):
    """A runtime whose serving objects a cluster owns (kubernetes): `status` shows what it
    reads back, per model: replicas and their owner, readiness per pod, the route's accepted
    status and weights, and what is missing (a gateway without an address)."""

    def cluster_report(self, names: Sequence[str] | None = None) -> dict[str, Any]: ...


@runtime_checkable
class SelfSampling(Protocol):
    """A Metrics backend that builds its own series from snapshots (the built-in scraper of
    the engine's counters), unlike one that keeps history itself (Prometheus). A gate hold
    takes a first snapshot when it starts, so its first measurement covers a whole interval."""

    def observe(self) -> str | None:
        """Take a snapshot now (unless the last one is fresh); an error text, or None."""
        ...


@dataclass(frozen=True)
class ImageQuery:
    """One model version whose image the planner needs to know about: `sha256` is its
    artifact's (None: not known before registration; then there is nothing to look for)."""

    model: str
    semver: str
    sha256: str | None


@runtime_checkable
class Images(Protocol):
    """The OCI registry that model images are pushed to (`images:` in mlops.yaml)."""

    @property
    def base(self) -> str:
        """The pinned base image (images.base)."""
        ...

    @property
    def repository(self) -> str:
        """images.repository: a model's images are REPOSITORY/MODEL."""
        ...

    def lookup(self, queries: Sequence[ImageQuery]) -> dict[str, state.ImageState]:
        """The image of each queried version, by model, found by the content tag carrying its
        sha256, in one pass over one registry connection. Raises the registry's errors."""
        ...
