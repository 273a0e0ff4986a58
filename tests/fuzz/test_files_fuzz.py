"""The controller's readers of files a user (or anyone who can write the workspace) hands it:
spec files and mlops.yaml (spec/load.py), saved plans (plan/planfile.py), policy files
(policy/load.py). Each returns its value or raises the project's error with one-line
problems; never another exception."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from mlops.plan import planfile
from mlops.policy import load as policy_load
from mlops.spec import load as spec_load
from mlops.spec import safeyaml
from tests.fuzz import oracle
from tests.fuzz.profiles import TIMEOUT_S, budget

pytestmark = pytest.mark.timeout(TIMEOUT_S)

ROOT = Path(__file__).resolve().parents[2]
SPEC = (ROOT / "specs" / "fraud-scorer.yaml").read_text()
POLICY = (ROOT / "policies" / "default.yaml").read_text()
PLANS = [p.read_text() for p in sorted((ROOT / "tests" / "plan" / "golden").glob("*.json"))]


@pytest.fixture(scope="module")
def workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as directory:
        yield Path(directory)


def _yaml_docs() -> st.SearchStrategy[str]:
    """YAML text from random JSON-like values, and the valid spec with parts replaced."""

    def replaced(value: Any, where: list[str]) -> str:
        doc = yaml.safe_load(SPEC)
        node = doc
        for key in where[:-1]:
            node = node.setdefault(key, {}) if isinstance(node, dict) else node
        if isinstance(node, dict):
            node[where[-1]] = value
        return yaml.safe_dump(doc)

    paths = st.sampled_from(
        [
            ["spec", "model", "version"], ["spec", "model", "signature"],
            ["spec", "rollout", "steps"], ["spec", "serving", "batching"], ["metadata", "name"],
            ["spec", "rollout", "gates"], ["spec", "monitoring"], ["kind"], ["spec"],
        ]
    )  # fmt: skip
    return st.one_of(
        oracle.json_values.map(lambda v: yaml.safe_dump(v)),
        st.builds(replaced, oracle.json_values, paths),
    )


@budget(150)
@given(text=oracle.mutated(SPEC) | _yaml_docs() | st.text(max_size=200))
@example(text="a: &a [*a]")
@example(text="[" * 10_000)
@example(text=SPEC.replace("version: 1.0.0", "version: 1.0.0\n    version: 2.0.0"))
def test_spec_files_load_or_list_one_line_problems(workspace: Path, text: str) -> None:
    (workspace / "specs").mkdir(exist_ok=True)
    path = workspace / "specs" / "fuzzed.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        loaded = oracle.parse(lambda: spec_load.load_specs([path], workspace))
    except oracle.Refused:
        return
    assert all(item.name for item in loaded)


@budget(100)
@given(text=_yaml_docs() | st.text(max_size=200) | oracle.mutated("serve:\n  port: 8480\n"))
# Found by fuzzing: a key holding a line break was printed raw, splitting the problem line.
@example(text='"\\r": 1\n')
@example(text='serve: {"a\\nb": 1}\n')
def test_workspace_config_loads_or_lists_one_line_problems(workspace: Path, text: str) -> None:
    path = workspace / "mlops.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    with contextlib.suppress(oracle.Refused):
        oracle.parse(lambda: spec_load.load_workspace_config(path))


def _plan_with(value: Any, index: int, key: str) -> str:
    doc = json.loads(PLANS[index % len(PLANS)])
    actions = doc.get("actions") or []
    if actions and key.startswith("action."):
        actions[0][key.removeprefix("action.")] = value
    else:
        doc[key.removeprefix("action.")] = value
    return json.dumps(doc)


_plan_keys = st.sampled_from(
    ["action.kind", "action.after", "action.before", "action.id", "action.model", "actions",
     "created_at", "state_fingerprint", "steps", "rollback", "format_version"]
)  # fmt: skip


@budget(300)
@given(
    text=st.one_of(
        st.integers(0, len(PLANS) - 1).flatmap(lambda i: oracle.mutated(PLANS[i])),
        st.builds(_plan_with, oracle.json_values, st.integers(0, 10), _plan_keys),
        st.text(max_size=100),
    )
)
# Found by fuzzing: nesting past Python's recursion limit raised RecursionError.
@example(text="[" * 100_000 + "]" * 100_000)
@example(text='{"format_version": 2, "schema_version": "mlops-plan/v2", "actions": ' + "[" * 5000)
def test_plan_files_load_or_get_one_line_error(text: str) -> None:
    try:
        plan = oracle.parse(lambda: planfile.loads(text))
    except oracle.Refused:
        return
    assert planfile.loads(planfile.dumps(plan)) == plan  # what loads, round-trips


@budget(150)
@given(text=oracle.mutated(POLICY) | _yaml_docs() | st.text(max_size=200))
@example(text="rules: [" * 3000)
@example(text='"\\r": 1\n')  # found by fuzzing: the key was printed raw (two lines)
def test_policy_files_parse_or_list_one_line_problems(text: str) -> None:
    with contextlib.suppress(oracle.Refused):
        oracle.parse(lambda: policy_load.parse_policies({"fuzzed.yaml": safeyaml.read_text(text)}))
