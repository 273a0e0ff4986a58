"""Capacity and cost of plans, against figures computed by hand in each test's comments."""

from __future__ import annotations

import pytest

from mlops.plan import capacity, diff
from mlops.plan import resources as r
from mlops.spec import models as spec
from mlops.state import models as state

from . import helpers as h

GPU = """
serving:
  hardware: {cpu: 2, memory: 4Gi, accelerator: nvidia-t4, count: 1}
  replicas: {min: 2, max: 4}
"""
COSTS = spec.WorkspaceCosts(
    currency="EUR", cpu_hour=0.04, memory_gib_hour=0.005, accelerator_hour={"nvidia-t4": 0.35}
)
V1 = h.deployment(version="1.0.0", extra=GPU)
V11 = h.deployment(version="1.1.0", extra=GPU)  # canary 5% for 60s, 50% for 120s, 100%


def _live(replicas: int = 2) -> state.LiveState:
    return state.LiveState(
        registry={"fraud": h.registry(h.reg_version(V1), stable="1.0.0")},
        runtime={"fraud": h.runtime("fraud", {"1.0.0": 100}, replicas=replicas)},
    )


def _plan(deps: list[spec.ModelDeployment], live: state.LiveState, **kwargs: object) -> r.Capacity:
    return diff.diff(
        [h.desired(d) for d in deps],
        live,
        workspace="/ws",
        created_at=h.CREATED_AT,
        spec_digest="d",
        costs=COSTS,
        **kwargs,  # type: ignore[arg-type]
    ).capacity


def test_canary_rollout_on_gpus() -> None:
    cap = _plan([V11], _live())
    fraud = cap.models["fraud"]
    # 2 replicas x (2 CPU, 4 GiB, 1 T4), before and after.
    expected = r.Resources(cpu=4, memory_gib=8, accelerators={"nvidia-t4": 2})
    assert (fraud.replicas_before, fraud.replicas_after) == (2, 2)
    assert fraud.before == expected and fraud.after == expected
    # The canary loads 2 more replicas beside the serving ones, for 60s + 120s of holds.
    assert fraud.peak_extra == expected
    assert fraud.rollout_seconds == 180.0
    # 180s = 0.05h: 4 CPU x 0.05 = 0.2 CPU-h, 8 GiB x 0.05 = 0.4 GiB-h, 2 T4 x 0.05 = 0.1.
    assert fraud.rollout == r.Usage(
        cpu_hours=0.2, memory_gib_hours=0.4, accelerator_hours={"nvidia-t4": 0.1}
    )
    # Per hour: 4 x 0.04 + 8 x 0.005 + 2 x 0.35 = 0.16 + 0.04 + 0.70 = 0.90.
    # Rollout: 0.2 x 0.04 + 0.4 x 0.005 + 0.1 x 0.35 = 0.008 + 0.002 + 0.035 = 0.045.
    assert cap.cost == r.Cost(
        currency="EUR", hourly_before=0.9, hourly_after=0.9, rollout=0.045, unpriced=[]
    )
    assert cap.peak_extra == expected and cap.rollout == fraud.rollout


def test_first_deployment_has_no_peak_and_a_scale_up_shows_before_and_after() -> None:
    first = _plan([V1], state.LiveState())
    model = first.models["fraud"]
    assert (model.replicas_before, model.replicas_after) == (0, 2)
    assert model.before == r.Resources() and model.peak_extra == r.Resources()
    # 0 before; 2 x (2 CPU, 4 GiB, 1 T4) after: 4 x 0.04 + 8 x 0.005 + 2 x 0.35 = 0.9 per hour.
    assert first.cost is not None and (first.cost.hourly_before, first.cost.hourly_after) == (
        0.0,
        0.9,
    )
    # 1 replica serving (outside the range 2..4): the in-place update takes it to 2.
    grown = _plan([V1], _live(replicas=1)).models["fraud"]
    assert (grown.replicas_before, grown.replicas_after) == (1, 2)
    assert grown.before.cpu == 2 and grown.after.cpu == 4


def test_memory_quantities_and_unpriced_accelerators() -> None:
    assert capacity.gib("512Mi") == 0.5
    assert capacity.gib("2Gi") == 2.0
    assert capacity.gib("1G") == pytest.approx(1e9 / 2**30)
    a100 = h.deployment(
        version="1.0.0", extra="serving: {hardware: {accelerator: nvidia-a100, count: 2}}"
    )
    cap = _plan([a100], state.LiveState())
    assert cap.after.accelerators == {"nvidia-a100": 2}
    assert cap.cost is not None and cap.cost.unpriced == ["nvidia-a100"]
    assert cap.cost.hourly_after is None and cap.cost.hourly_before == 0.0


def test_no_cost_table_no_cost() -> None:
    plan = h.plan([V11], _live())
    assert plan.capacity.cost is None
    assert plan.capacity.models["fraud"].peak_extra.accelerators == {"nvidia-t4": 2}


def test_costs_are_validated() -> None:
    with pytest.raises(ValueError, match="three-letter"):
        spec.WorkspaceCosts(currency="dollars")
    with pytest.raises(ValueError, match="accelerator name"):
        spec.WorkspaceCosts(accelerator_hour={"Not A GPU": 1.0})
    with pytest.raises(ValueError):
        spec.WorkspaceCosts(cpu_hour=-1)
