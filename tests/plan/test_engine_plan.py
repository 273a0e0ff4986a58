"""The shared engine's worker count is planned once for every model (issue 10: "an apply that
restarts the shared engine without saying so"). Pure: specs and live states inline."""

from __future__ import annotations

import json

import pytest

from mlops.plan import engine as engine_
from mlops.plan import types as t
from mlops.render import json as json_view
from mlops.render import markdown, text
from mlops.spec import models as spec
from mlops.state import models as state

from .helpers import deployment, plan, reg_version, registry, runtime

K = t.ActionKind


def replicas(low: int, high: int) -> str:
    return f"serving: {{replicas: {{min: {low}, max: {high}}}}}"


def serving(
    name: str, count: int, low: int = 1, high: int = 2
) -> tuple[spec.ModelDeployment, state.RegistryModel, state.RuntimeModel]:
    """`name` 1.0.0 deployed and stable, at 100% on an engine of `count` workers."""
    dep = deployment(name, "1.0.0", replicas(low, high))
    model = runtime(name, {"1.0.0": 100}, replicas=count)
    return dep, registry(reg_version(dep), stable="1.0.0"), model


def live_with(
    count: int,
    served: list[tuple[spec.ModelDeployment, state.RegistryModel, state.RuntimeModel]],
    extra: dict[str, state.RegistryModel] | None = None,
) -> state.LiveState:
    return state.LiveState(
        registry={d.name: r for d, r, _ in served} | (extra or {}),
        runtime={d.name: m for d, _, m in served},
        engine=state.EngineState(replicas=count, models=sorted(d.name for d, _, _ in served)),
    )


@pytest.mark.parametrize(
    ("ranges", "running", "expected"),
    [
        ({"a": (1, 2)}, 1, 1),  # within every range: unchanged
        ({"a": (1, 2), "b": (2, 2)}, 1, 2),  # b needs 2
        ({"a": (1, 3), "b": (1, 2)}, 3, 2),  # b allows at most 2
        ({"a": (1, 4), "b": (2, 4)}, 3, 3),  # anything in 2..4 is fine: stay
        ({"a": (3, 3), "b": (1, 2)}, 2, 3),  # no overlap: the highest min wins
        ({"a": (2, 4), "b": (1, 4)}, 0, 2),  # not running: started with the lowest fit
        ({}, 2, None),
    ],
)
def test_the_engine_count_moves_as_little_as_possible(
    ranges: dict[str, tuple[int, int]], running: int, expected: int | None
) -> None:
    bounds = {name: spec.Replicas(min=lo, max=hi) for name, (lo, hi) in ranges.items()}
    assert engine_.engine_replicas(bounds, running) == expected


def test_a_second_model_that_needs_more_workers_is_one_planned_scale() -> None:
    first = serving("fraud", 1, 1, 2)
    second = deployment("churn", "1.0.0", replicas(2, 2))
    p = plan([first[0], second], live_with(1, [first]))

    scale = p.actions[0]
    assert scale.kind is K.SCALE_ENGINE and scale.model == "churn"
    assert scale.address == "engine.churn" and scale.symbol is t.ChangeSymbol.UPDATE
    assert isinstance(scale.before, t.EngineBefore) and scale.before.replicas == 1
    assert isinstance(scale.after, t.ScaleEnginePayload) and scale.after.replicas == 2
    assert [(m.name, m.before, m.after, m.min, m.max) for m in scale.after.models] == [
        ("churn", 0, 2, 2, 2),
        ("fraud", 1, 2, 1, 2),
    ]
    assert "churn needs at least 2 workers" in scale.reason and "shared with fraud" in scale.reason
    # Nothing else changes the engine: every load and conformance test carries its count.
    for action in p.actions[1:]:
        assert action.kind is not K.SCALE_ENGINE
        if isinstance(action.after, t.LoadPayload | t.ConformancePayload):
            assert action.after.replicas == 2
    assert p.summary.change >= 1


def test_the_issue_case_adds_a_model_without_restarting_the_engine() -> None:
    # The engine runs 2 workers for fraud (min 2); churn (1..2) is added: 2 fits both, so
    # no engine step, and churn's load says 2 (before: "replicas 1", and apply restarted
    # the engine with 1 worker).
    first = serving("fraud", 2, 2, 2)
    second = deployment("churn", "1.0.0", replicas(1, 2))
    p = plan([first[0], second], live_with(2, [first]))
    assert K.SCALE_ENGINE not in {a.kind for a in p.actions}
    loads = [a.after for a in p.actions if isinstance(a.after, t.LoadPayload)]
    assert loads and all(load.replicas == 2 for load in loads)


def test_shrinking_is_planned_too_and_names_the_model_that_limits_it() -> None:
    first = serving("fraud", 3, 1, 3)
    second = serving("churn", 3, 1, 3)
    tighter = deployment("churn", "1.0.0", replicas(1, 2))
    p = plan([first[0], tighter], live_with(3, [first, second]))
    (scale,) = [a for a in p.actions if a.kind is K.SCALE_ENGINE]
    assert p.actions[0] is scale and scale.model == "churn"
    assert isinstance(scale.after, t.ScaleEnginePayload) and scale.after.replicas == 2
    assert "churn allows at most 2 workers" in scale.reason
    # Replicas are the engine's: no per-model update_config for them.
    assert K.UPDATE_CONFIG not in {a.kind for a in p.actions}


def test_in_range_is_no_changes_and_conflicting_ranges_converge_with_a_warning() -> None:
    first = serving("fraud", 2, 1, 2)
    assert plan([first[0]], live_with(2, [first])).actions == []
    # fraud allows at most 1, churn needs 2: the engine runs 2 (no endless update), warned.
    narrow = serving("fraud", 2, 1, 1)
    wide = serving("churn", 2, 2, 2)
    p = plan([narrow[0], wide[0]], live_with(2, [narrow, wide]))
    assert p.actions == []
    assert any("fraud: replicas.max is 1" in w for w in p.warnings)


def test_a_model_served_without_a_spec_is_listed_and_a_deleted_one_is_not() -> None:
    first = serving("fraud", 1, 1, 2)
    kept = serving("legacy", 1)
    live = live_with(1, [first, kept])
    grow = deployment("fraud", "1.0.0", replicas(2, 2))
    p = plan([grow], live)
    (scale,) = [a for a in p.actions if a.kind is K.SCALE_ENGINE]
    assert isinstance(scale.after, t.ScaleEnginePayload)
    assert [(m.name, m.min) for m in scale.after.models] == [("fraud", 2), ("legacy", None)]
    applied = live.model_copy(update={"last_applied": {"legacy": state.AppliedRecord()}})
    p = plan([grow], applied, allow_delete=True)
    (scale,) = [a for a in p.actions if a.kind is K.SCALE_ENGINE]
    assert isinstance(scale.after, t.ScaleEnginePayload)
    assert [m.name for m in scale.after.models] == ["fraud"]


def test_no_shared_engine_no_step_and_the_old_replicas_rule() -> None:
    # Kubernetes (engine None): each model's replicas are its own, as before.
    dep, reg, model = serving("fraud", 3, 1, 2)
    live = state.LiveState(registry={"fraud": reg}, runtime={"fraud": model})
    p = plan([dep], live)
    assert [a.kind for a in p.actions] == [K.UPDATE_CONFIG]


def test_the_step_is_shown_in_every_view_and_round_trips() -> None:
    first = serving("fraud", 1, 1, 2)
    p = plan([first[0], deployment("churn", "1.0.0", replicas(2, 2))], live_with(1, [first]))
    shown = text.TextView().render(p)
    assert "~ scale_engine      engine.churn  workers 1 -> 2, new workers join once" in shown
    assert "churn new: 2 (replicas 2..2), fraud 1 -> 2 (replicas 1..2)" in shown
    why = "the engine's workers 1 -> 2: churn needs at least 2 workers (replicas.min)"
    assert f"        # {why}; shared with fraud" in shown
    md = markdown.MarkdownView().render(p)
    assert "! scale_engine     engine.churn  workers 1 -> 2" in md
    assert f"Engine: {why}; shared with fraud." in md
    doc = json.loads(json_view.JsonView().render(p))
    (action,) = [a for a in doc["actions"] if a["kind"] == "scale_engine"]
    assert action["before"] == {"replicas": 1}
    assert action["after"]["replicas"] == 2 and len(action["after"]["models"]) == 2
    assert action["reason"].startswith(why)
    assert t.Plan.model_validate_json(p.model_dump_json()) == p


def test_a_running_engine_is_in_the_fingerprint_a_stopped_one_is_not() -> None:
    base = state.LiveState()
    assert (
        base.fingerprint() == base.model_copy(update={"engine": state.EngineState()}).fingerprint()
    )
    one = base.model_copy(update={"engine": state.EngineState(replicas=1)})
    two = base.model_copy(update={"engine": state.EngineState(replicas=2)})
    assert one.fingerprint() != two.fingerprint()
