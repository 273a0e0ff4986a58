"""A version's engine settings (settings.json, docs/engine.md), built from its spec.

Here, below both the planner and the providers, because both build them: the planner puts
them in `load` and `update_config` actions, and the kubernetes target renders the same ones
into its manifests for `mlops manifests` (what is reviewed is what is applied).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    WrapSerializer,
    model_serializer,
)

from mlops.spec import models as spec

# Warm-up requests the engine runs before a version reports ready; the spec has no knob for it.
WARMUP_REQUESTS = 2


def unset_left_out(value: Any, handler: SerializerFunctionWrapHandler) -> Any:
    """Serialize without the keys that are null, as the spec and the engine write them."""
    data = handler(value)
    return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


# The spec's batching, written with unset keys left out.
Batching = Annotated[spec.Batching, WrapSerializer(unset_left_out)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="64 lowercase hex digits")]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Warmup(_Frozen):
    requests: int = Field(default=2, ge=0, le=1000, description="requests run before ready")


class EngineAutoscaling(_Frozen):
    """How the local engine's supervisor scales its workers for this model (docs/monitoring-
    gates.md): `target` requests waiting or running per worker, within `min`..`max`."""

    metric: Literal["queue_depth", "gpu_utilization"] = "queue_depth"
    target: float = Field(gt=0, le=100_000, description="per worker")
    min: int = Field(default=1, ge=1, le=64, description="fewest workers")
    max: int = Field(default=1, ge=1, le=64, description="most workers")
    scale_up_cooldown: float = Field(default=15.0, gt=0, le=86_400, description="seconds")
    scale_down_cooldown: float = Field(default=120.0, gt=0, le=86_400, description="seconds")


class EngineSettings(_Frozen):
    """A version's settings.json as the engine reads it (docs/engine.md)."""

    signature: spec.Signature
    batching: Batching = spec.Batching()
    warmup: Warmup = Warmup()
    autoscaling: EngineAutoscaling | None = Field(
        default=None, description="the spec's serving.autoscaling and replicas range"
    )
    accelerator: str | None = Field(
        default=None,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="serving.hardware.accelerator: run on CUDA/TensorRT when present",
    )
    sha256: Sha256 | None = Field(
        default=None,
        description="the digest the engine must serve: set on the reload of a version that "
        "serves other bytes than the registered ones",
    )

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> Any:
        return unset_left_out(self, handler)

    def engine_json(self) -> dict[str, Any]:
        """The settings.json object sent to the engine."""
        return self.model_dump(mode="json")


def settings(
    deployment: spec.ModelDeployment,
    signature: spec.Signature | None = None,
    *,
    sha256: str | None = None,
) -> EngineSettings:
    """The engine's settings for a version from the spec; `signature` overrides the spec's for
    another version of the same model (the stable one, reloaded for a canary); `sha256` is
    the digest the engine must serve (the reload of tampered bytes)."""
    return EngineSettings(
        signature=signature or deployment.spec.model.signature,
        batching=deployment.spec.serving.batching,
        warmup=Warmup(requests=WARMUP_REQUESTS),
        sha256=sha256,
        autoscaling=_autoscaling(deployment.spec.serving),
        accelerator=_accelerator(deployment.spec.serving.hardware),
    )


def _accelerator(hardware: spec.Hardware) -> str | None:
    return None if hardware.accelerator == "none" else hardware.accelerator[:63]


def _autoscaling(serving: spec.Serving) -> EngineAutoscaling | None:
    scaling = serving.autoscaling
    if scaling is None:
        return None
    return EngineAutoscaling(
        metric=scaling.metric,
        target=min(scaling.target, 100_000),
        min=min(serving.replicas.min, 64),
        max=min(serving.replicas.max, 64),
        scale_up_cooldown=scaling.scale_up_cooldown,
        scale_down_cooldown=scaling.scale_down_cooldown,
    )


def engine_settings(
    deployment: spec.ModelDeployment, signature: spec.Signature | None = None
) -> dict[str, Any]:
    """settings.json for the engine (docs/engine.md), as JSON."""
    return settings(deployment, signature).engine_json()
