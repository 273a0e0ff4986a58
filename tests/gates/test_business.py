"""The `positive_rate` business gate: spec bounds, verdicts, and both backends' arithmetic."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from mlops.core import Verdict
from mlops.gates import evaluate as ev
from mlops.providers.base import Sample
from mlops.providers.metrics import promql
from mlops.providers.metrics import series as metric_math
from mlops.render import describe
from mlops.spec import models as spec

RATE = spec.Gate(metric="positive_rate", max_decrease=0.2, min_outcomes=50)
FLOOR = spec.Gate(metric="positive_rate", min=0.5)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_increase": 0.1}, "max_increase does not apply to positive_rate"),
        ({}, "positive_rate needs 'min' or 'max' or 'max_decrease'"),
        ({"min": 1.5}, "fractions between 0 and 1"),
        ({"max_decrease": 1.5}, "less than or equal to 1"),
        ({"max_decrease": 0.1, "min_outcomes": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_positive_rate_gates_are_refused_in_one_line(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        spec.Gate(metric="positive_rate", **fields)


def test_feedback_fields_belong_to_positive_rate_only() -> None:
    with pytest.raises(pydantic.ValidationError, match="apply only to positive_rate"):
        spec.Gate(metric="error_rate", max=0.1, max_decrease=0.1)
    assert RATE.relative and not FLOOR.relative


CASES = [
    ("within the allowed decrease", Sample(0.7, 60), Sample(0.8, 200), Verdict.PASSED),
    ("a drop past max_decrease", Sample(0.3, 60), Sample(0.8, 200), Verdict.FAILED),
    ("too few canary outcomes", Sample(0.0, 49), Sample(0.8, 200), Verdict.INCONCLUSIVE),
    ("too few stable outcomes", Sample(0.3, 60), Sample(0.8, 10), Verdict.INCONCLUSIVE),
    ("no stable version", Sample(0.3, 60), None, Verdict.INCONCLUSIVE),
    ("stable rate zero", Sample(0.0, 60), Sample(0.0, 200), Verdict.PASSED),
    ("backend error", Sample(None, 0, "timeout"), Sample(0.8, 200), Verdict.ERROR),
]


@pytest.mark.parametrize(("_name", "canary", "stable", "verdict"), CASES, ids=[c[0] for c in CASES])
def test_positive_rate_verdicts(
    _name: str, canary: Sample, stable: Sample | None, verdict: Verdict
) -> None:
    # min_requests 1000 is the rollout's: a feedback gate counts its own outcomes instead.
    m = ev.evaluate(RATE, canary, stable, min_requests=1000)
    assert m.verdict is verdict, m
    if verdict is Verdict.FAILED:
        assert "-62% under stable 0.8 (allowed -20%)" in m.detail
        assert m.threshold == ">= stable (0.8) -20% and over >= 50 outcomes"
    if _name == "too few canary outcomes":
        assert m.detail == "49 feedback outcomes in the window, need 50"


def test_an_absolute_floor_needs_no_stable_and_defaults_its_outcomes() -> None:
    assert ev.needed(FLOOR, 7) == ev.DEFAULT_MIN_OUTCOMES
    assert ev.evaluate(FLOOR, Sample(0.4, 30), None, 0).verdict is Verdict.FAILED
    assert ev.evaluate(FLOOR, Sample(0.6, 30), None, 0).verdict is Verdict.PASSED
    assert ev.evaluate(FLOOR, Sample(0.6, 19), None, 0).verdict is Verdict.INCONCLUSIVE


def test_the_plan_line_shows_the_business_gate() -> None:
    assert describe.gate(RATE) == "positive_rate >= -20% vs stable and over >= 50 outcomes"


TEXT = """# TYPE mlops_feedback counter
mlops_feedback_total{model="m",version="1.0.0"} %d
# TYPE mlops_feedback_value counter
mlops_feedback_value_total{model="m",version="1.0.0"} %d
"""


def test_the_builtin_scraper_reads_feedback_counters_and_takes_window_deltas() -> None:
    before = metric_math.parse_routes(TEXT % (10, 8))["m", "1.0.0", "routed"]
    after = metric_math.parse_routes(TEXT % (110, 38))["m", "1.0.0", "routed"]
    delta = after.minus(before)
    assert delta.feedback == {"count": 100.0, "value": 30.0}
    assert metric_math.positive_rate(delta) == pytest.approx(0.3)
    assert metric_math.positive_rate(metric_math.VersionCounters()) is None


def test_the_promql_templates_divide_feedback_value_by_outcomes() -> None:
    query = promql.gate_query(RATE, "m", "1.0.0", "30s")
    count = promql.request_count(RATE, "m", "1.0.0", "30s")
    assert "mlops_feedback_value_total{" in query and " / sum(" in query
    assert count.startswith("sum(((mlops_feedback_total{") and "route" not in count
