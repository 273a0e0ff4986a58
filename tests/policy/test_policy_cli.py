"""`mlops policy check PLANFILE` through the real CLI entry point, with saved plan files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops.plan import planfile
from mlops.plan import types as t
from mlops.policy import load
from tests import support
from tests.policy.conftest import canary, delete, immediate, plan
from tests.support import Runner

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Runner:
    return support.cli_runner(capsys)


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace with plans/ok.json (canary), plans/bad.json (immediate), plans/warn.json
    (a delete: warning only) and the repository's default policy in policies/."""
    root = tmp_path / "ws"
    (root / "policies").mkdir(parents=True)
    (root / "mlops.yaml").write_text("target: local\n")
    (root / "policies" / "default.yaml").write_bytes((REPO / "policies/default.yaml").read_bytes())
    plans: dict[str, t.Plan] = {
        "ok": plan(canary()),
        "bad": plan(immediate(), canary(name="other")),
        "warn": plan(delete()),
    }
    for name, the_plan in plans.items():
        planfile.save(the_plan, root / "plans" / f"{name}.json")
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLOPS_DEBUG", raising=False)
    return root


def test_passing_plan(ws: Path, run: Runner) -> None:
    result = run("policy", "check", "plans/ok.json")
    assert result.code == 0, result.err
    assert "Policy check passed: 1 model(s)." in result.out
    assert "policies/default.yaml" in result.out


def test_violations_exit_1_and_name_rule_model_and_detail(ws: Path, run: Runner) -> None:
    result = run("policy", "check", "plans/bad.json")
    assert result.code == 1
    assert "ERROR    no-immediate-updates  fraud: 1.1.0 is rolled out immediate" in result.out
    assert "ERROR    small-first-step  fraud: first step sends 100% to 1.1.0" in result.out
    assert "other" not in result.out  # the canary model passes
    assert result.err.strip().startswith("Error: policy check failed: 3 error(s)")
    assert len(result.err.strip().splitlines()) == 1


def test_json(ws: Path, run: Runner) -> None:
    result = run("policy", "check", "plans/bad.json", "--format", "json")
    assert result.code == 1
    doc = json.loads(result.out)
    assert doc["format_version"] == 1 and doc["passed"] is False
    assert doc["plan"] == "plans/bad.json"
    assert doc["models"] == ["fraud", "other"]
    assert {v["rule"] for v in doc["violations"] if v["severity"] == "error"} == {
        "no-immediate-updates",
        "small-first-step",
        "gated-rollouts",
    }
    assert doc["errors"] == 3 and doc["rules_checked"] == len(load.load_builtin().rules)


def test_warnings_fail_only_with_strict(ws: Path, run: Runner) -> None:
    lenient = run("policy", "check", "plans/warn.json")
    assert lenient.code == 0
    assert "WARNING  loud-deletes  old: deletes deployment old" in lenient.out
    assert "1 warning(s)" in lenient.out
    strict = run("policy", "check", "plans/warn.json", "--strict")
    assert strict.code == 1
    assert "0 error(s), 1 warning(s)" in strict.err


def test_custom_policy_dir_and_file(ws: Path, run: Runner) -> None:
    custom = ws / "ops"
    custom.mkdir()
    (custom / "strict.yaml").write_text(
        "rules:\n  - {id: tiny-steps, message: start at 1%, max_first_step_weight: 1}\n"
    )
    by_dir = run("policy", "check", "plans/ok.json", "--policy", "ops")
    assert by_dir.code == 1 and "tiny-steps" in by_dir.out
    by_file = run("policy", "check", "plans/ok.json", "--policy", "ops/strict.yaml")
    assert by_file.code == 1 and "first step sends 5%" in by_file.out


def test_builtin_rules_without_a_policies_dir(ws: Path, run: Runner) -> None:
    (ws / "policies" / "default.yaml").unlink()
    (ws / "policies").rmdir()
    result = run("policy", "check", "plans/bad.json", "--format", "json")
    assert result.code == 1
    assert json.loads(result.out)["policies"] == ["builtin:default.yaml"]


def test_workspace_flag_resolves_paths_from_the_workspace(
    ws: Path, run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ws.parent)
    assert run("-C", str(ws), "policy", "check", "plans/ok.json").code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plans/missing.json"], "does not exist"),
        (["../outside.json"], "outside the workspace"),
        (["policies/default.yaml"], "not a plan file"),
        (["plans/ok.json", "--policy", "nowhere"], "does not exist"),
        (["plans/ok.json", "--policy", "../outside.json"], "outside the workspace"),
        (["plans/ok.json", "--policy", "broken"], "broken/p.yaml:2:5: rules[0]: unknown check"),
    ],
)
def test_bad_input_is_a_clear_error(ws: Path, run: Runner, args: list[str], message: str) -> None:
    (ws.parent / "outside.json").write_text(planfile.dumps(plan(canary())))
    (ws / "broken").mkdir()
    (ws / "broken" / "p.yaml").write_text("rules:\n  - {id: a, message: m, forbid: 1}\n")
    result = run("policy", "check", *args)
    assert result.code == 1
    assert message in result.err and "Traceback" not in result.err
    assert result.out == ""


def test_help_has_an_example(run: Runner) -> None:
    result = run("policy", "check", "--help")
    assert result.code == 0 and "mlops policy check plans/release.json" in result.out
