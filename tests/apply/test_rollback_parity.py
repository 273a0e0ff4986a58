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

import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlops import api, core
from mlops import workspace as ws_mod
from mlops.apply import executor, journal, recorders
from mlops.apply import hooks as hooks_
from mlops.apply import target as target_
from mlops.plan import types as t
from mlops.providers import factory
from mlops.render import base as render
from mlops.render import describe
from mlops.state import models as state

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
NAME = "fraud-scorer"
K = t.ActionKind


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spec(
    version: str, *, name: str = NAME, shadow: str = "", value: float, keep: str = "0s"
) -> str:
    return f"""apiVersion: mlops/v1
kind: ModelDeployment
metadata: {{name: {name}}}
spec:
  model:
    version: {version}
    artifact: ../models/{NAME}-{version}.onnx
    signature:
      inputs: [{{name: input, dtype: FP32, shape: [-1, 30]}}]
      outputs:
        - {{name: label, dtype: INT64, shape: [-1]}}
        - {{name: probabilities, dtype: FP32, shape: [-1, 2]}}
    baseline: {{metric: accuracy, value: {value}, p99_ms: 1000}}
    validation: {{data: ../data/{NAME}-val.npz, tolerance: 0.01}}
  serving:
    replicas: {{min: 1, max: 1}}
  rollout:
    strategy: canary
    {shadow}
    steps: [{{weight: 25, hold: 1s}}, {{weight: 100}}]
    interval: 1s
    keep_previous: {keep}
"""


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    for version in ("1.0.0", "1.1.0"):
        subprocess.run(
            [
                sys.executable,
                str(REPO / "examples" / "train.py"),
                "--version",
                version,
                "--out",
                str(out),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return out


def accuracy(trained: Path, version: str) -> float:
    import json

    return float(json.loads((trained / "models" / f"{NAME}-{version}.json").read_text())["value"])


@pytest.fixture(scope="session")
def empty_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised, empty MLflow database to copy (creating one runs every migration)."""
    root = tmp_path_factory.mktemp("registry")
    registry = factory.registry(ws_mod.open_workspace(root))
    registry.initialise()  # type: ignore[attr-defined]
    return root / ".mlops" / "mlflow.db"


@dataclass
class Walk:
    root: Path
    trained: Path

    def target(self) -> target_.Target:
        ws = ws_mod.open_workspace(self.root)
        runtime = factory.runtime(ws)
        return target_.Target(
            ws, factory.registry(ws), runtime, lambda: factory.metrics(ws, runtime)
        )

    def write(self, name: str, text: str) -> None:
        (self.root / "specs" / f"{name}.yaml").write_text(text)

    def plan(self) -> t.Plan:
        made = api.plan(str(self.root), [self.root / "specs"])
        assert not made.errors, made.errors
        return made


@pytest.fixture
def walk(tmp_path: Path, trained: Path, empty_registry: Path) -> Iterator[Walk]:
    """A workspace where 1.0.0 is registered, conformant, stable and serving. (Each test has
    its own: MLflow keeps one store per database path in the process.)"""
    root = tmp_path / "ws"
    shutil.copytree(trained / "models", root / "models")
    shutil.copytree(trained / "data", root / "data")
    (root / ".mlops").mkdir()
    shutil.copy(empty_registry, root / ".mlops" / "mlflow.db")
    (root / "specs").mkdir()
    (root / "mlops.yaml").write_text(f"target: local\nserve: {{port: {free_port()}}}\n")
    walk = Walk(root, trained)
    walk.write(NAME, spec("1.0.0", value=accuracy(trained, "1.0.0")))
    try:
        api.apply(None, [root / "specs"], workspace=root)
        yield walk
    finally:
        api.down(workspace=root)


def snapshot(target: target_.Target, model: str) -> dict[str, Any]:
    runtime = target.runtime
    live = runtime.refresh([model]).get(model) if runtime.reachable() else None
    registry = target.registry.refresh([model]).get(model)
    return {
        "weights": dict(live.weights) if live else {},
        "shadow": live.shadow if live else None,
        "loaded": set(live.loaded) if live else set(),
        "aliases": dict(registry.aliases) if registry else {},
    }


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
