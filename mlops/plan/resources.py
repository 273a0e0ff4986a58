"""Capacity and cost of a plan, as data (computed in plan/capacity.py; a part of `Plan`).

Figures are per model and totalled: resources are replicas x the spec's `serving.hardware`
(CPU cores, memory in GiB, accelerators by name); hours are resources x the rollout's holds.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from mlops.spec import models as spec

Amount = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Accelerators = Annotated[dict[str, Amount], Field(max_length=64)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Resources(_Frozen):
    """What some replicas hold: CPU cores, memory (GiB), accelerators by name (count)."""

    cpu: Amount = 0.0
    memory_gib: Amount = 0.0
    accelerators: Accelerators = Field(default_factory=dict)


class Usage(_Frozen):
    """Resources over time: core-hours, GiB-hours, accelerator-hours by name."""

    cpu_hours: Amount = 0.0
    memory_gib_hours: Amount = 0.0
    accelerator_hours: Accelerators = Field(default_factory=dict)


class Cost(_Frozen):
    """Prices applied (mlops.yaml `costs:`); null figures: a resource used has no price."""

    currency: str = Field(default="USD", max_length=8)
    hourly_before: Amount | None = Field(default=None, description="per hour, before the plan")
    hourly_after: Amount | None = Field(default=None, description="per hour, after the plan")
    rollout: Amount | None = Field(
        default=None, description="the extra capacity of the rollout over its holds"
    )
    unpriced: list[str] = Field(
        default_factory=list, max_length=64, description="accelerators used that have no price"
    )


class ModelCapacity(_Frozen):
    """One model: replicas x hardware before and after, the extra while both versions run."""

    replicas_before: int = Field(ge=0, le=256, description="replicas serving now (0: none)")
    replicas_after: int = Field(ge=0, le=256, description="replicas after the plan (0: deleted)")
    hardware_before: spec.Hardware | None = Field(
        default=None, description="the hardware it serves with now (null: not serving)"
    )
    hardware_after: spec.Hardware | None = Field(
        default=None, description="the spec's hardware (null: deleted)"
    )
    autoscaling: spec.Autoscaling | None = Field(default=None, description="the spec's policy")
    replicas_range: spec.Replicas | None = Field(
        default=None, description="the spec's replicas.min..max (null: deleted)"
    )
    before: Resources = Resources()
    after: Resources = Resources()
    peak_extra: Resources = Field(
        default=Resources(),
        description="above `before` while a canary runs beside the serving version",
    )
    rollout_seconds: Amount = Field(default=0.0, description="the holds of the rollout")
    rollout: Usage = Field(default=Usage(), description="peak_extra x rollout_seconds")


class Capacity(_Frozen):
    """Every model of the plan's specs (and deleted ones), and their totals."""

    models: dict[str, ModelCapacity] = Field(default_factory=dict, max_length=100_000)
    before: Resources = Resources()
    after: Resources = Resources()
    peak_extra: Resources = Resources()
    rollout: Usage = Usage()
    cost: Cost | None = Field(default=None, description="null: no `costs:` in mlops.yaml")
