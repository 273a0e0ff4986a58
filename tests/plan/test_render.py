"""Golden tests of the three renderings. Regenerate: MLOPS_UPDATE_GOLDEN=1 pytest tests/plan"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from mlops.plan import types as t
from mlops.render import base
from mlops.state import models as state

from . import helpers as h
from .test_diff import EMPTY, STABLE_V1, V1, V11_SHADOW

GOLDEN = Path(__file__).parent / "golden"
UPDATE = bool(os.environ.get("MLOPS_UPDATE_GOLDEN"))
EXTENSIONS = {"text": "txt", "json": "json", "markdown": "md"}


def _rollout_plan() -> t.Plan:
    """Canary with shadow phase, an outside change, a new model, and a removed one (warned)."""
    applied = {
        "fraud": state.AppliedRecord(
            loaded=["1.0.0"], weights={"1.0.0": 100}, aliases={"stable": "1.0.0"}
        ),
        "legacy": state.AppliedRecord(loaded=["0.3.0"], weights={"0.3.0": 100}),
    }
    legacy = h.deployment(name="legacy", version="0.3.0")
    live = STABLE_V1.model_copy(
        update={
            "runtime": {
                "fraud": h.runtime("fraud", {"1.0.0": 100}, loaded=["1.0.0", "0.9.0"]),
                "legacy": h.runtime("legacy", {"0.3.0": 100}),
            },
            "registry": {**STABLE_V1.registry, "legacy": h.registry(h.reg_version(legacy))},
            "last_applied": applied,
            "traffic_rate": {"fraud": 12.5},
        }
    )
    return h.plan([V11_SHADOW, h.deployment(name="scorer-b", version="0.1.0")], live)


def _delete_plan() -> t.Plan:
    applied = {
        "fraud": state.AppliedRecord(
            loaded=["1.0.0"], weights={"1.0.0": 100}, aliases={"stable": "1.0.0"}
        )
    }
    return h.plan([], STABLE_V1.model_copy(update={"last_applied": applied}), allow_delete=True)


PLANS = {
    "rollout": _rollout_plan,
    "no-changes": lambda: h.plan([V1], STABLE_V1),
    "first-deploy": lambda: h.plan([V1], EMPTY),
    "config": lambda: h.plan(
        [h.deployment(version="1.0.0", extra="serving: {batching: {max_batch_size: 64}}")],
        STABLE_V1,
    ),
    "delete": _delete_plan,
}


@pytest.mark.parametrize("fmt", list(EXTENSIONS))
@pytest.mark.parametrize("name", list(PLANS))
def test_golden(name: str, fmt: str) -> None:
    rendered = base.view(fmt, color=False).render(PLANS[name]())
    path = GOLDEN / f"{name}.{EXTENSIONS[fmt]}"
    if UPDATE:
        path.write_text(rendered, encoding="utf-8")
    assert path.exists(), f"missing golden {path}: run with MLOPS_UPDATE_GOLDEN=1"
    assert rendered == path.read_text(encoding="utf-8")


def test_text_shows_what_a_reviewer_needs() -> None:
    text = base.view("text").render(_rollout_plan())
    outside = text.index("Objects have changed outside of mlops")
    actions = text.index("mlops will perform the following actions")
    assert outside < actions
    assert "shadow 50% -> 5% -> 50% -> 100%" in text
    assert "error_rate <= 0.001" in text and "latency_p99 <= +20% vs stable" in text
    assert "legacy is managed by mlops but has no spec" in text
    assert text.rstrip().endswith("Plan: 4 to add, 2 to change, 1 to destroy.")
    assert "\x1b[" not in text
    delete = base.view("text").render(_delete_plan())
    assert "-   deployment.fraud" not in delete  # the symbol column is right-aligned
    assert "  - deployment.fraud" in delete and "DESTROYED" in delete


def test_colour_only_when_asked() -> None:
    coloured = base.view("text", color=True).render(_rollout_plan())
    assert "\x1b[" in coloured


def test_no_color_and_pipes_disable_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert base.use_color(Tty()) is True
    monkeypatch.setenv("NO_COLOR", "1")
    assert base.use_color(Tty()) is False
    monkeypatch.delenv("NO_COLOR")

    class Pipe(io.StringIO):
        def isatty(self) -> bool:
            return False

    assert base.use_color(Pipe()) is False


def test_json_rendering_is_the_plan() -> None:
    plan = _rollout_plan()
    document = json.loads(base.view("json").render(plan))
    assert t.Plan.model_validate(document) == plan
    assert document["format_version"] == 2 and document["schema_version"] == "mlops-plan/v2"
    assert list(document)[:6] == [
        "format_version",
        "schema_version",
        "created_at",
        "workspace",
        "spec_digest",
        "state_fingerprint",
    ]


def test_markdown_puts_the_summary_first_and_details_in_blocks() -> None:
    md = base.view("markdown").render(_rollout_plan())
    assert md.startswith("### mlops plan: 4 to add, 2 to change, 1 to destroy\n")
    assert md.count("<details>") == md.count("</details>") >= 3
    assert md.index("| `fraud` |") < md.index("<details>")


def test_unknown_format_is_a_usage_error() -> None:
    from mlops import errors

    with pytest.raises(errors.UsageError, match="unknown format"):
        base.view("yaml")
