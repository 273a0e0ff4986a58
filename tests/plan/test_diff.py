"""Table-driven tests of the pure diff: specs and live states inline, plans out."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from mlops.plan import types as t
from mlops.spec import models as spec
from mlops.state import models as state

from . import helpers as h

V1 = h.deployment(version="1.0.0")
V11 = h.deployment(version="1.1.0")
V11_SHADOW = h.deployment(version="1.1.0", extra="rollout: {shadow: {percent: 50, hold: 30s}}")
V11_IMMEDIATE = h.deployment(version="1.1.0", extra="rollout: {strategy: immediate}")
V1_BATCH = h.deployment(version="1.0.0", extra="serving: {batching: {max_batch_size: 64}}")
V1_REPLICAS = h.deployment(version="1.0.0", extra="serving: {replicas: {min: 2, max: 3}}")

STABLE_V1 = state.LiveState(
    registry={"fraud": h.registry(h.reg_version(V1), stable="1.0.0")},
    runtime={
        "fraud": h.runtime(
            "fraud",
            {"1.0.0": 100},
            config={"1.0.0": {"batching": {"max_batch_size": 32, "max_queue_delay_ms": 5}}},
        )
    },
)
EMPTY = state.LiveState()
ENGINE_DOWN = STABLE_V1.model_copy(update={"runtime": {}, "runtime_reachable": False})
IN_PROGRESS = state.LiveState(
    registry={
        "fraud": h.registry(h.reg_version(V1), h.reg_version(V11), stable="1.0.0", canary="1.1.0")
    },
    runtime={"fraud": h.runtime("fraud", {"1.0.0": 95, "1.1.0": 5})},
)
CANARY_STEPS = [
    "set_traffic[1.0.0=95,1.1.0=5]",
    "checkpoint_gate[5]",
    "set_traffic[1.0.0=50,1.1.0=50]",
    "checkpoint_gate[50]",
    "set_traffic[1.1.0=100]",
]


@dataclass
class Case:
    id: str
    specs: list[spec.ModelDeployment]
    live: state.LiveState
    expected: list[str]
    change: str | None = None  # ModelChange.symbol
    reason: str = ""  # substring of the ModelChange reason
    summary: tuple[int, int, int] | None = None
    allow_delete: bool = False
    warnings: list[str] = field(default_factory=list)


CASES = [
    Case(
        "first-deploy-canary",
        [V1],
        EMPTY,
        [
            "register",
            "verify",
            "conformance_test",
            "load[1.0.0]",
            "set_traffic[1.0.0=100]",
            "promote[stable=1.0.0]",
        ],
        change="+",
        reason="no stable version to compare against",
        summary=(3, 0, 0),
    ),
    Case(
        "canary-with-steps",
        [V11],
        STABLE_V1,
        [
            "register",
            "verify",
            "conformance_test",
            "load[1.1.0]",
            "promote[canary=1.1.0]",
            *CANARY_STEPS,
            "promote[stable=1.1.0]",
            "retire[1.0.0]",
        ],
        change="-/+",
        reason="canary rollout from 1.0.0 to 1.1.0",
        summary=(1, 2, 1),
    ),
    Case(
        "shadow-phase",
        [V11_SHADOW],
        STABLE_V1,
        [
            "register",
            "verify",
            "conformance_test",
            "load[1.1.0]",
            "promote[canary=1.1.0]",
            "set_traffic[1.0.0=100 shadow=1.1.0]",
            "checkpoint_gate[0]",
            *CANARY_STEPS,
            "promote[stable=1.1.0]",
            "retire[1.0.0]",
        ],
        change="-/+",
    ),
    Case(
        "immediate",
        [V11_IMMEDIATE],
        STABLE_V1,
        [
            "register",
            "verify",
            "conformance_test",
            "load[1.1.0]",
            "set_traffic[1.1.0=100]",
            "promote[stable=1.1.0]",
            "retire[1.0.0]",
        ],
        change="-/+",
        reason="at once",
    ),
    Case("no-op", [V1], STABLE_V1, [], summary=(0, 0, 0)),
    Case(
        "config-batching",
        [V1_BATCH],
        STABLE_V1,
        ["update_config"],
        change="~",
        reason="in place",
        summary=(0, 1, 0),
    ),
    Case("config-replicas", [V1_REPLICAS], STABLE_V1, ["update_config"], change="~"),
    Case(
        "engine-down-reloads-stable",
        [V1],
        ENGINE_DOWN,
        ["load[1.0.0]", "set_traffic[1.0.0=100]"],
        change="~",
        warnings=["not reachable"],
    ),
    Case(
        "engine-down-canary-loads-stable-first",
        [V11],
        ENGINE_DOWN,
        [
            "register",
            "verify",
            "conformance_test",
            "load[1.1.0]",
            "load[1.0.0]",
            "promote[canary=1.1.0]",
            *CANARY_STEPS,
            "promote[stable=1.1.0]",
            "retire[1.0.0]",
        ],
        warnings=["not reachable"],
    ),
    Case(
        "engine-down-immediate-needs-no-stable",
        [V11_IMMEDIATE],
        ENGINE_DOWN,
        [
            "register",
            "verify",
            "conformance_test",
            "load[1.1.0]",
            "set_traffic[1.1.0=100]",
            "promote[stable=1.1.0]",
        ],
        warnings=["not reachable"],
    ),
    Case(
        "weights-moved-by-hand-restored",
        [V1],
        STABLE_V1.model_copy(
            update={"runtime": {"fraud": h.runtime("fraud", {"1.0.0": 70, "0.9.0": 30})}}
        ),
        ["set_traffic[1.0.0=100]"],
        reason="restore",
    ),
    Case(
        "rollout-in-progress-continues",
        [V11],
        IN_PROGRESS,
        ["checkpoint_gate[5]", *CANARY_STEPS[2:], "promote[stable=1.1.0]", "retire[1.0.0]"],
        reason="in progress at 5%",
    ),
    Case(
        "rollout-in-progress-abandoned-by-spec",
        [V1],
        IN_PROGRESS,
        ["set_traffic[1.0.0=100]", "retire[1.1.0]", "promote[stable=1.0.0]"],
        warnings=["abandoned"],
    ),
    Case(
        "rollout-in-progress-superseded",
        [h.deployment(version="1.2.0")],
        IN_PROGRESS,
        [
            "set_traffic[1.0.0=100]",
            "retire[1.1.0]",
            "register",
            "verify",
            "conformance_test",
            "load[1.2.0]",
            "promote[canary=1.2.0]",
            "set_traffic[1.0.0=95,1.2.0=5]",
            "checkpoint_gate[5]",
            "set_traffic[1.0.0=50,1.2.0=50]",
            "checkpoint_gate[50]",
            "set_traffic[1.2.0=100]",
            "promote[stable=1.2.0]",
            "retire[1.0.0]",
        ],
        warnings=["superseded"],
    ),
    Case(
        "delete-without-flag-warns",
        [],
        STABLE_V1.model_copy(
            update={
                "last_applied": {
                    "fraud": state.AppliedRecord(
                        loaded=["1.0.0"], weights={"1.0.0": 100}, aliases={"stable": "1.0.0"}
                    )
                }
            }
        ),
        [],
        warnings=["--allow-delete"],
        summary=(0, 0, 0),
    ),
    Case(
        "delete-with-flag",
        [],
        STABLE_V1.model_copy(
            update={
                "last_applied": {
                    "fraud": state.AppliedRecord(
                        loaded=["1.0.0"], weights={"1.0.0": 100}, aliases={"stable": "1.0.0"}
                    )
                }
            }
        ),
        ["delete"],
        change="-",
        allow_delete=True,
        summary=(0, 0, 1),
    ),
    Case(
        "unmanaged-registry-model-is-left-alone",
        [],
        STABLE_V1,
        [],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_diff(case: Case) -> None:
    plan = h.plan(case.specs, case.live, allow_delete=case.allow_delete)
    assert plan.errors == []
    assert h.kinds(plan) == case.expected
    if case.change is not None:
        assert plan.models["fraud"].symbol == case.change
    if case.reason:
        assert case.reason in plan.models["fraud"].reason
    if case.summary is not None:
        s = plan.summary
        assert (s.add, s.change, s.destroy) == case.summary
    for text in case.warnings:
        assert any(text in w for w in plan.warnings), plan.warnings
    if not case.warnings:
        assert plan.warnings == []
    assert plan.has_changes == bool(case.expected)


def test_every_action_is_addressed_chained_and_explained() -> None:
    plan = h.plan([V11_SHADOW], STABLE_V1)
    ids = [a.id for a in plan.actions]
    assert len(set(ids)) == len(ids)
    for previous, action in zip(plan.actions, plan.actions[1:], strict=False):
        assert action.depends_on == [previous.id]
        assert action.reason
        assert action.address.split(".", 1)[0] in ("version", "traffic", "deployment")
    assert plan.actions[0].depends_on == []
    assert plan.state_fingerprint == STABLE_V1.fingerprint()
    assert plan.created_at == h.CREATED_AT


def test_gates_hold_and_interval_come_from_the_spec() -> None:
    plan = h.plan([V11_SHADOW], STABLE_V1)
    gates = [a.after for a in plan.actions if isinstance(a.after, t.CheckpointPayload)]
    assert [(g.weight, g.hold, g.shadow) for g in gates] == [
        (0, 30.0, True),
        (5, 60.0, False),
        (50, 120.0, False),
    ]
    first = gates[0]
    assert first.interval == 10.0 and first.stable == "1.0.0" and first.canary == "1.1.0"
    # No gates declared: the standard defaults apply.
    assert [g.model_dump(exclude_none=True) for g in first.gates] == [
        {"metric": "error_rate", "max": 0.001},
        {"metric": "latency_p99", "max_increase": 0.2},
    ]


def test_shadow_agreement_gate_only_while_mirroring() -> None:
    dep = h.deployment(
        version="1.1.0",
        extra="""
        rollout:
          shadow: {percent: 100, hold: 10s}
          gates: [{metric: shadow_agreement, min: 0.98}, {metric: error_rate, max: 0.01}]
        """,
    )
    plan = h.plan([dep], STABLE_V1)
    gates = [a.after for a in plan.actions if isinstance(a.after, t.CheckpointPayload)]
    metrics = [[g.metric for g in a.gates] for a in gates]
    assert metrics == [["shadow_agreement", "error_rate"], ["error_rate"], ["error_rate"]]


def test_load_carries_engine_settings_from_the_spec() -> None:
    plan = h.plan([V11], STABLE_V1)
    load = next(a for a in plan.actions if a.kind is t.ActionKind.LOAD)
    assert load.after.model_dump(mode="json", exclude_none=True) == {
        "semver": "1.1.0",
        "settings": {
            "signature": V11.spec.model.signature.model_dump(mode="json"),
            "batching": {"max_batch_size": 32, "max_queue_delay_ms": 5.0, "max_queue_size": 256},
            "warmup": {"requests": 2},
        },
        "replicas": 1,
    }
    register = plan.actions[0]
    assert register.after == t.RegisterPayload(
        semver="1.1.0",
        artifact="models/fraud-1.1.0.onnx",
        sha256=None,
        signature=V11.spec.model.signature,
        baseline=V11.spec.model.baseline,
        validation=t.ValidationData(data="data/fraud-val.npz", tolerance=0.005),
    )
    # The conformance test carries how the version is loaded for it and its validation set.
    test = next(a.after for a in plan.actions if isinstance(a.after, t.ConformancePayload))
    assert isinstance(load.after, t.LoadPayload)
    assert test.settings == load.after.settings
    assert test.validation == "data/fraud-val.npz" and test.replicas == 1


def test_estimates_sum_holds_and_requests_at_current_rate() -> None:
    live = STABLE_V1.model_copy(update={"traffic_rate": {"fraud": 10.0}})
    plan = h.plan([V11_SHADOW], live)
    estimate = plan.estimates["fraud"]
    assert estimate.rollout_seconds == 30 + 60 + 120
    # shadow 50% * 30s + 5% * 60s + 50% * 120s, at 10 req/s
    assert estimate.canary_requests == pytest.approx((15 + 3 + 60) * 10)
    assert h.plan([V11], STABLE_V1).estimates["fraud"].canary_requests is None


def test_rollback_is_precomputed_for_every_risky_step() -> None:
    plan = h.plan([V11], STABLE_V1)
    rollback = plan.rollback["fraud"]
    gate_ids = [a.id for a in plan.actions if a.kind is t.ActionKind.CHECKPOINT_GATE]
    assert set(gate_ids) <= set(rollback)
    undo = rollback[gate_ids[0]]
    assert [a.kind for a in undo] == ["set_traffic", "retire", "promote"]
    assert undo[0].after == t.TrafficPayload(weights={"1.0.0": 100}, shadow=None)
    assert undo[1].after == t.RetirePayload(semver="1.1.0", after_seconds=0.0)
    assert undo[2].after == t.PromotePayload(aliases={"stable": "1.0.0"}, clear=["canary"])
    conformance = next(a.id for a in plan.actions if a.kind is t.ActionKind.CONFORMANCE_TEST)
    # The conformance test runs the candidate loaded, with no traffic: it is unloaded again.
    assert [(a.kind, a.after) for a in rollback[conformance]] == [
        ("retire", t.RetirePayload(semver="1.1.0", after_seconds=0.0))
    ]
    # Every step of the rollout up to the promotion carries its rollback.
    stop = next(
        a.id
        for a in plan.actions
        if isinstance(a.after, t.PromotePayload) and "stable" in a.after.aliases
    )
    steps = [a.id for a in plan.actions]
    assert set(steps[steps.index(conformance) : steps.index(stop)]) <= set(rollback)
    promote = [a.id for a in plan.actions if a.kind is t.ActionKind.PROMOTE][-1]
    assert promote not in rollback


@pytest.mark.parametrize(
    ("live", "message"),
    [
        (
            state.LiveState(
                registry={
                    "fraud": h.registry(
                        h.reg_version(V1),
                        h.reg_version(V11, state.VersionStatus.REJECTED, "error_rate 0.02 > 0.001"),
                        stable="1.0.0",
                    )
                }
            ),
            "version 1.1.0 was rejected (error_rate 0.02 > 0.001)",
        ),
    ],
)
def test_rejected_version_is_refused(live: state.LiveState, message: str) -> None:
    plan = h.plan([V11], live)
    assert plan.actions == [] and any(message in e for e in plan.errors), plan.errors
    bumped = h.plan([h.deployment(version="1.1.1")], live)
    assert bumped.errors == [] and bumped.has_changes


BREAKING = [
    (
        "input-dtype",
        "inputs: [{name: input, dtype: FP64, shape: [-1, 4]}]",
        "input 'input' dtype FP32 -> FP64",
    ),
    (
        "input-removed",
        "inputs: [{name: features, dtype: FP32, shape: [-1, 4]}]",
        "input 'input' removed",
    ),
    (
        "output-removed",
        "outputs: [{name: label, dtype: FP32, shape: [-1, 2]}]",
        "output 'score' removed",
    ),
    (
        "input-shape",
        "inputs: [{name: input, dtype: FP32, shape: [-1, 5]}]",
        "input 'input' shape [-1, 4] -> [-1, 5]",
    ),
    ("input-rank", "inputs: [{name: input, dtype: FP32, shape: [-1]}]", "input 'input' shape"),
]


@pytest.mark.parametrize(("case", "signature", "message"), BREAKING, ids=[b[0] for b in BREAKING])
def test_breaking_signature_needs_a_major_bump(case: str, signature: str, message: str) -> None:
    extra = f"model: {{signature: {{{signature}}}}}"
    minor = h.plan([h.deployment(version="1.1.0", extra=extra)], STABLE_V1)
    assert minor.actions == []
    assert len(minor.errors) == 1 and message in minor.errors[0], minor.errors
    assert "major version bump" in minor.errors[0]
    patch = h.plan([h.deployment(version="1.0.1", extra=extra)], STABLE_V1)
    assert patch.errors and message in patch.errors[0]
    major = h.plan([h.deployment(version="2.0.0", extra=extra)], STABLE_V1)
    assert major.errors == [] and major.has_changes


def test_compatible_signature_changes_are_allowed_with_a_minor_bump() -> None:
    extra = """
    model:
      signature:
        inputs: [{name: input, dtype: FP32, shape: [-1, 4]}]
        outputs:
          - {name: score, dtype: FP32, shape: [-1, 2]}
          - {name: label, dtype: INT64, shape: [-1]}
    """
    plan = h.plan([h.deployment(version="1.1.0", extra=extra)], STABLE_V1)
    assert plan.errors == []


def test_pinned_checksum_differing_from_the_registry_is_refused() -> None:
    pinned = h.deployment(version="1.0.0", extra=f"model: {{sha256: {'b' * 64}}}")
    plan = h.plan([pinned], STABLE_V1)
    assert plan.errors and "immutable" in plan.errors[0]


def test_outside_changes_are_reported_before_the_changes() -> None:
    applied = state.AppliedRecord(
        loaded=["1.0.0"], weights={"1.0.0": 100}, aliases={"stable": "1.0.0"}
    )
    live = state.LiveState(
        registry={
            "fraud": h.registry(
                h.reg_version(V1), h.reg_version(V11), stable="1.0.0", canary="1.1.0"
            )
        },
        runtime={"fraud": h.runtime("fraud", {"1.0.0": 90, "1.1.0": 10})},
        last_applied={"fraud": applied},
    )
    plan = h.plan([V1], live)
    got = {(c.address, c.field): (c.expected, c.actual) for c in plan.outside_changes}
    assert got == {
        ("deployment.fraud", "aliases"): (
            {"stable": "1.0.0"},
            {"canary": "1.1.0", "stable": "1.0.0"},
        ),
        ("deployment.fraud", "loaded"): (["1.0.0"], ["1.0.0", "1.1.0"]),
        ("traffic.fraud", "weights"): ({"1.0.0": 100}, {"1.0.0": 90, "1.1.0": 10}),
    }
    in_sync = STABLE_V1.model_copy(update={"last_applied": {"fraud": applied}})
    assert h.plan([V1], in_sync).outside_changes == []


def test_engine_down_is_not_an_outside_change() -> None:
    applied = state.AppliedRecord(
        loaded=["1.0.0"], weights={"1.0.0": 100}, aliases={"stable": "1.0.0"}
    )
    live = ENGINE_DOWN.model_copy(update={"last_applied": {"fraud": applied}})
    assert h.plan([V1], live).outside_changes == []


def test_plan_is_sorted_by_model_and_duplicate_names_are_errors() -> None:
    a, b = h.deployment(name="b-model", version="1.0.0"), h.deployment(name="a-model")
    plan = h.plan([a, b], EMPTY)
    assert plan.actions[0].address.startswith("version.a-model@")
    assert h.plan([a, a], EMPTY).errors == ["b-model: declared by more than one spec"]
