"""The diff's input per model (a desired spec) and its output per model."""

from __future__ import annotations

from dataclasses import dataclass, field

from mlops.plan import types as t
from mlops.spec import models as spec


@dataclass(frozen=True)
class Desired:
    """One spec as the diff needs it: artifact and validation as workspace-relative paths
    (or a models:/ URI), so that the plan is portable between checkouts."""

    deployment: spec.ModelDeployment
    artifact: str
    validation: str | None = None
    # sha256 of the artifact file, read by the caller when that semver is already registered
    # (None: not read, or a models:/ URI): released versions are immutable.
    artifact_sha256: str | None = None
    # The serving config (hardware, replicas, autoscaling) apply last applied for the model
    # (None: not recorded): what a change of hardware or autoscaling is planned against.
    served: spec.Serving | None = None


@dataclass
class ModelResult:
    actions: list[t.Action] = field(default_factory=list)
    rollback: dict[str, list[t.Action]] = field(default_factory=dict)
    estimate: t.Estimate | None = None
    change: t.ModelChange | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
