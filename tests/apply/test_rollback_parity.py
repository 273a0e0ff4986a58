"""One rollback (issue 10): what apply does when a rollout stops at a step is exactly what the
plan shows for that step, and it is enough (the candidate keeps no traffic, no loaded copy,
no alias).

Each plan (canary, shadow, two models, stable not loaded) is walked step by step against the
real local target (MLflow on sqlite, the engine): apply runs the plan up to the step (gates
declared passed), the rollout is stopped there through the executor's own failure path, and
the journaled rollback, the views' "on failure" line and the live state afterwards are
compared with `plan.rollback`. The version is not rejected during the walk (as when the
metrics backend fails) so the next step can run it again.
"""

from __future__ import annotations

import pytest

from mlops import api, core
from mlops.apply import executor, journal, recorders
from mlops.apply import hooks as hooks_
from mlops.plan import types as t
from mlops.render import base as render
from mlops.render import describe
from mlops.state import models as state
from tests.apply.conftest import NAME, Walk, accuracy, snapshot, spec

pytestmark = pytest.mark.slow

K = t.ActionKind


def executed(run: journal.Journal, model: str) -> list[t.Action]:
    """The steps of the rollback the run journaled for `model`."""
    entry, ended = run.rollbacks()[model]
    assert ended, "the rollback did not finish"
    done = run.completed()
    steps = [t.Action.model_validate(raw) for raw in entry.data["steps"]]
    assert all(step.id in done for step in steps)
    return steps


def check_walk(walk: Walk, plan: t.Plan) -> int:
    """Stop each model's rollout at each of its steps in turn; compare. Returns the number
    of rollbacks that had something to undo."""
    text = render.view("text", color=False).render(plan)
    markdown = render.view("markdown", color=False).render(plan)
    undone = 0
    models = list(dict.fromkeys(core.Address(a.address).model for a in plan.actions))
    for model in models:
        change = plan.models[model]
        canary, stable = change.to_version, change.from_version
        assert canary is not None
        mine = [a for a in plan.actions if core.Address(a.address).model == model]
        undo = plan.rollback.get(model, {})
        widest = describe.rollback(describe.widest(undo))
        assert f"on failure: {widest}; mark it rejected" in text
        assert f"On failure: {widest}; the version is rejected." in markdown
        for index in range(len(mine)):
            undone += stop_at(walk, plan, model, mine[: index + 1], canary, stable)
    return undone


def stop_at(
    walk: Walk,
    plan: t.Plan,
    model: str,
    actions: list[t.Action],
    canary: str,
    stable: str | None,
) -> int:
    """Run `actions` (in a run of their own), then stop the rollout at the last one."""
    at = actions[-1]
    target = walk.target()
    part = plan.model_copy(update={"actions": actions})
    run = journal.Journal.create(target.ws.ensure_state_dir(), part, "parity walk")
    hooks = hooks_.Hooks([recorders.JournalHook(run)])
    gates = {a.id for a in actions if a.kind is K.CHECKPOINT_GATE}
    # Each action's payload carries all it needs: the executor sees only the first steps.
    runner = executor.Executor(target, part, run, hooks)
    assert runner.execute(resumed=False, passed=gates).outcome is executor.Outcome.APPLIED
    others = {m: snapshot(target, m) for m in plan.models if m != model}
    before = snapshot(target, model)

    result = runner.roll_back_at(at, canary, stable, f"parity: stopped at {at.id}", reject=False)

    after = snapshot(target, model)
    expected = plan.rollback.get(model, {}).get(at.id, [])
    steps = list(result.steps)
    where = f"stopped at {at.id}"
    # Apply ran the plan's steps for that step, in order, nothing more, and journaled them.
    assert steps == expected, where
    assert executed(run, model) == expected, where
    assert describe.rollback(steps) == describe.rollback(expected), where
    traffic = next((s.after for s in steps if isinstance(s.after, t.TrafficPayload)), None)
    retire = next((s.after for s in steps if isinstance(s.after, t.RetirePayload)), None)
    promote = next((s.after for s in steps if isinstance(s.after, t.PromotePayload)), None)
    if traffic is not None:
        planned = {v: w for v, w in traffic.weights.items() if w > 0}
        assert (after["weights"], after["shadow"]) == (planned, None), where
    else:
        assert (after["weights"], after["shadow"]) == (before["weights"], before["shadow"]), where
    if retire is not None:
        assert after["loaded"] == before["loaded"] - {retire.semver}, where
    else:
        assert after["loaded"] == before["loaded"], where
    if promote is not None:
        assert after["aliases"] == dict(promote.aliases), where
    else:
        assert after["aliases"] == before["aliases"], where
    promoted = any(
        isinstance(a.after, t.PromotePayload) and a.after.aliases.get("stable") == canary
        for a in actions
    )
    if not promoted:
        # Enough: nothing of the candidate is left serving, loaded or named.
        assert after["weights"].get(canary, 0) == 0 and after["shadow"] is None, where
        assert canary not in after["loaded"], where
        assert after["aliases"].get("canary") != canary, where
    else:
        assert steps == [] and after == before, where
    # Other models are not touched.
    assert {m: snapshot(target, m) for m in others} == others, where
    return 1 if steps else 0


def test_canary_plan(walk: Walk) -> None:
    walk.write(NAME, spec("1.1.0", value=accuracy(walk.trained, "1.1.0")))
    plan = walk.plan()
    assert [a.kind for a in plan.actions].count(K.CHECKPOINT_GATE) == 1
    assert check_walk(walk, plan) >= 5


def test_shadow_plan(walk: Walk) -> None:
    shadow = "shadow: {percent: 50, hold: 1s}"
    walk.write(NAME, spec("1.1.0", shadow=shadow, value=accuracy(walk.trained, "1.1.0")))
    plan = walk.plan()
    traffic = [a.after for a in plan.actions if a.kind is K.SET_TRAFFIC]
    assert traffic[0] == t.TrafficPayload(
        weights={"1.0.0": 100}, shadow=state.ShadowRoute(version="1.1.0", percent=50)
    )
    assert check_walk(walk, plan) >= 6


def test_two_models_one_first_deployment(walk: Walk) -> None:
    walk.write(NAME, spec("1.1.0", value=accuracy(walk.trained, "1.1.0")))
    walk.write("scorer-b", spec("1.0.0", name="scorer-b", value=accuracy(walk.trained, "1.0.0")))
    plan = walk.plan()
    assert set(plan.models) == {NAME, "scorer-b"}
    # The first deployment has no stable version: its rollback takes it out of service.
    first = plan.rollback["scorer-b"]
    assert any(
        s.kind is K.SET_TRAFFIC and s.after == t.TrafficPayload(weights={}, shadow=None)
        for steps in first.values()
        for s in steps
    )
    assert check_walk(walk, plan) >= 8


def test_stable_not_loaded(walk: Walk) -> None:
    # The engine is down when the plan is made: apply starts it and loads 1.0.0 next to 1.1.0.
    api.down(workspace=walk.root)
    walk.write(NAME, spec("1.1.0", value=accuracy(walk.trained, "1.1.0")))
    plan = walk.plan()
    loads = [a.after.semver for a in plan.actions if isinstance(a.after, t.LoadPayload)]
    assert loads == ["1.1.0", "1.0.0"]
    assert check_walk(walk, plan) >= 5
