"""Two models on the shared local engine (issue 10: "an apply that restarts the shared engine
without saying so").

Before: adding a second model with `replicas: {min: 1, max: 2}` next to one running 2 workers
planned only `load ... replicas 1, no traffic`, and apply replaced the running engine with a
1-worker one (the first model lost a worker, the next plan wanted to fix it). Now the engine's
worker count is planned once for every model: a change of it is a `scale_engine` step in the
plan, apply performs exactly that step, live, with no failed request for the model already
serving, and the next plan has no changes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.conftest import NAME, E2EWorkspace, Load

pytestmark = pytest.mark.slow

OTHER = "churn-scorer"


def add_model(ws: E2EWorkspace, low: int, high: int) -> None:
    """A second model (the same trained artifact under another name) with its own range."""
    text = (ws.root / "specs" / f"{NAME}.yaml").read_text()
    text = text.replace(f"metadata: {{name: {NAME}}}", f"metadata: {{name: {OTHER}}}")
    text = text.replace("replicas: {min: 2, max: 2}", f"replicas: {{min: {low}, max: {high}}}")
    (ws.root / "specs" / f"{OTHER}.yaml").write_text(text)


def set_range(ws: E2EWorkspace, name: str, low: int, high: int) -> None:
    path = ws.root / "specs" / f"{name}.yaml"
    lines = [
        f"    replicas: {{min: {low}, max: {high}}}"
        if line.strip().startswith("replicas:")
        else line
        for line in path.read_text().splitlines()
    ]
    path.write_text("\n".join(lines) + "\n")


def engine(ws: E2EWorkspace) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((ws.root / ".mlops" / "engine.json").read_text())
    return record


def scale_steps(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in plan["actions"] if a["kind"] == "scale_engine"]


def plan_json(ws: E2EWorkspace) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(ws.mlops("plan", "specs/", "--format", "json").stdout)
    return document


def apply_under_load(ws: E2EWorkspace, plan: str) -> None:
    with Load(ws, rate=150.0) as load:
        ws.mlops("apply", plan)
        load.wait_answers(150)  # and a second more on the engine as it now is
    assert load.summary is not None and load.summary.sent > 300
    assert load.summary.failed == 0, load.summary.to_dict()


def assert_no_changes(ws: E2EWorkspace) -> None:
    result = ws.mlops("plan", "specs/", "--detailed-exitcode", expect=None)
    assert result.code == 0, result.output
    assert "No changes." in result.stdout


def test_a_second_model_scales_the_shared_engine_as_planned_with_no_failed_request(
    ws: E2EWorkspace,
) -> None:
    ws.deploy_v1()  # fraud-scorer, replicas 2..2: the engine runs 2 workers
    first = engine(ws)
    assert first["replicas"] == 2

    # The case: a model that fits the running count (1..2) changes nothing of the
    # engine: no step, its load says 2 workers, the engine is the same process afterwards.
    add_model(ws, 1, 2)
    planned = plan_json(ws)
    assert scale_steps(planned) == []
    loads = [a for a in planned["actions"] if a["kind"] == "load"]
    assert [a["after"]["replicas"] for a in loads] == [2]
    apply_under_load(ws, ws.plan())
    assert engine(ws)["pid"] == first["pid"] and engine(ws)["replicas"] == 2
    assert_no_changes(ws)

    # A model that needs 3 workers: the plan says so, in every view, and apply does it.
    set_range(ws, OTHER, 3, 3)
    text = ws.mlops("plan", "specs/").stdout
    assert "~ scale_engine" in text and f"engine.{OTHER}" in text
    assert "workers 2 -> 3" in text and f"{NAME} 2 -> 3 (replicas 2..2, above its max)" in text
    assert f"# the engine's workers 2 -> 3: {OTHER} needs at least 3 workers" in text
    (step,) = scale_steps(plan_json(ws))
    assert step["before"] == {"replicas": 2} and step["after"]["replicas"] == 3
    assert {m["name"]: (m["before"], m["after"]) for m in step["after"]["models"]} == {
        NAME: (2, 3),
        OTHER: (2, 3),
    }
    markdown = ws.mlops("plan", "specs/", "--format", "markdown").stdout
    assert "scale_engine" in markdown and "Engine: the engine's workers 2 -> 3" in markdown
    apply_under_load(ws, ws.plan())
    now = engine(ws)
    assert now["pid"] == first["pid"] and now["replicas"] == 3  # scaled live, not restarted
    assert len(ws.admin_urls()) == 3
    assert_no_changes(ws)

    # Back down: the other model allows only 1 worker, fraud-scorer 1..3. Surplus workers
    # drain while fraud-scorer is under load.
    set_range(ws, NAME, 1, 3)
    set_range(ws, OTHER, 1, 1)
    (step,) = scale_steps(plan_json(ws))
    assert step["after"]["replicas"] == 1 and step["model"] == OTHER
    apply_under_load(ws, ws.plan())
    assert engine(ws)["replicas"] == 1 and engine(ws)["pid"] == first["pid"]
    assert_no_changes(ws)
