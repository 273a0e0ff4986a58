"""A version's engine settings (settings.json, docs/engine.md), built from its spec.

Here, below both the planner and the providers, because both build them: the planner puts
them in `load` and `update_config` actions, and the kubernetes target renders the same ones
into its manifests for `mlops manifests` (what is reviewed is what is applied).
"""

from __future__ import annotations

from typing import Annotated, Any

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


class EngineSettings(_Frozen):
    """A version's settings.json as the engine reads it (docs/engine.md)."""

    signature: spec.Signature
    batching: Batching = spec.Batching()
    warmup: Warmup = Warmup()
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
    )


def engine_settings(
    deployment: spec.ModelDeployment, signature: spec.Signature | None = None
) -> dict[str, Any]:
    """settings.json for the engine (docs/engine.md), as JSON."""
    return settings(deployment, signature).engine_json()
