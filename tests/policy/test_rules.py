"""Policy files: the default set loads, and every kind of bad file is one clear line each."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops import errors
from mlops.policy import load, rules

REPO = Path(__file__).resolve().parents[2]

GOOD_RULE = "  - {id: a, message: m, max_first_step_weight: 10}\n"


def test_default_policy_loads_and_matches_the_builtin() -> None:
    shipped = REPO / "policies" / "default.yaml"
    packaged = REPO / "mlops" / "policy" / "default.yaml"
    # The built-in fallback is the repository's default set: keep the two copies identical.
    assert shipped.read_bytes() == packaged.read_bytes()
    from_dir = load.load_policies(REPO / "policies")
    assert [r.id for r in from_dir.rules] == [r.id for r in load.load_builtin().rules]
    assert {r.check for r in from_dir.rules} == set(rules.CHECKS)  # every check is exampled
    assert from_dir.sources == (str(shipped),)


def test_durations_and_single_values() -> None:
    rule = rules.Rule.model_validate(
        {"id": "x", "message": "m", "min_hold": "90s", "models": "fraud-*"}
    )
    assert rule.check == "min_hold" and rule.value == 90.0 and rule.models == ["fraud-*"]
    one = rules.Rule.model_validate({"id": "y", "message": "m", "forbid_strategy": "immediate"})
    assert one.value == [rules.RolloutStrategy.IMMEDIATE]
    assert one.severity is rules.Severity.ERROR


BAD: list[tuple[str, str]] = [
    (
        "rules:\n  - {id: a, message: m, max_first_weight: 10}\n",
        "2:5: rules[0]: unknown check 'max_first_weight' (did you mean 'max_first_step_weight'?)",
    ),
    (
        "rules:\n  - {id: a, message: m, forbid_delete: true, min_hold: 5m}\n",
        "exactly one check key (found: forbid_delete, min_hold)",
    ),
    ("rules:\n  - {id: a, message: m}\n", "exactly one check key (found: none)"),
    (
        "rules:\n  - {id: a, message: m, severity: fatal, forbid_delete: true}\n",
        "rules[0].severity: Input should be 'error' or 'warning'",
    ),
    ("rules:\n  - {id: a, message: m, min_hold: soon}\n", "invalid duration 'soon'"),
    (
        "rules:\n  - {id: a, message: m, max_first_step_weight: 150}\n",
        "rules[0].max_first_step_weight: Input should be less than or equal to 100",
    ),
    ("rules:\n  - {id: a, message: m, forbid_strategy: [yolo]}\n", "forbid_strategy[0]"),
    ("rules:\n  - {id: Bad Id, message: m, forbid_delete: true}\n", "rule ids use lowercase"),
    ("rules:\n  - {message: m, forbid_delete: true}\n", "rules[0].id: Field required"),
    (GOOD_RULE.join(["rules:\n", ""]) + GOOD_RULE, "3:10: rules[1].id: duplicate id 'a'"),
    ("rulez: []\n", "rulez: Extra inputs are not permitted"),
    ("kind: ModelDeployment\nrules: []\n", "kind must be 'Policy'"),
    ("- just\n- a list\n", "1:1: a policy is a mapping with 'rules'"),
    ("", "empty policy file"),
    ("rules: [\n", "YAML syntax error"),
    ("rules: !!python/object:os.system {}\n", "1:8:"),
    ("rules:\n  - {id: a, id: b, message: m, forbid_delete: true}\n", "duplicate key"),
    ("rules: []\n", "define no rules"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_policy_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(errors.MlopsError) as caught:
        load.load_policies(tmp_path)
    assert message in caught.value.message
    assert caught.value.message.startswith(str(path)) or "define no rules" in message


def test_every_problem_in_every_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("rules:\n  - {id: a, message: m, bogus: 1}\n")
    (tmp_path / "b.yml").write_text("rules:\n  - {id: b, message: m}\n  - {id: c, message: m}\n")
    (tmp_path / "notes.txt").write_text("not a policy")
    with pytest.raises(load.PolicyFileError) as caught:
        load.load_policies(tmp_path)
    assert len(caught.value.problems) == 3
    assert [p.split(":")[0] for p in caught.value.problems] == [
        str(tmp_path / "a.yaml"),
        str(tmp_path / "b.yml"),
        str(tmp_path / "b.yml"),
    ]


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("rules:\n" + GOOD_RULE)
    (tmp_path / "b.yaml").write_text("rules:\n" + GOOD_RULE)
    with pytest.raises(load.PolicyFileError, match=r"duplicate id 'a' \(also in .*a.yaml\)"):
        load.load_policies(tmp_path)


def test_missing_or_empty_policy_dir(tmp_path: Path) -> None:
    with pytest.raises(errors.UsageError, match="does not exist"):
        load.load_policies(tmp_path / "nope")
    with pytest.raises(errors.UsageError, match=r"no policy files \(\*.yaml\)"):
        load.load_policies(tmp_path)
