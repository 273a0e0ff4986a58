"""The plan file's JSON Schema is generated from the models, the committed schema and the
reference part of docs/plan-json.md are what the generator writes, and plans validate."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mlops.plan import schema
from mlops.plan import types as t

from .test_render import GOLDEN

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "python -m mlops.plan.schema --update"


def test_the_committed_schema_is_the_generated_one() -> None:
    committed = (ROOT / schema.SCHEMA).read_text(encoding="utf-8")
    assert committed == schema.schema_text(), f"docs/plan-schema.json is stale: {REGENERATE}"


def test_the_doc_reference_is_the_generated_one() -> None:
    doc = (ROOT / schema.DOC).read_text(encoding="utf-8")
    assert schema.doc_with_reference(doc) == doc, f"docs/plan-json.md is stale: {REGENERATE}"


def test_every_payload_field_is_in_the_doc_and_nothing_else() -> None:
    doc = (ROOT / schema.DOC).read_text(encoding="utf-8")
    reference = doc.split(schema.BEGIN, 1)[1]
    documented: dict[str, set[str]] = {}
    for section in reference.split("#### ")[1:]:
        name = section.split("\n", 1)[0].strip()
        documented[name] = set(re.findall(r"^\| `([a-z_0-9]+)` \|", section, re.MULTILINE))
    for kind, (after, before) in t.PAYLOADS.items():
        for model in (after, before):
            if model is not None:
                assert documented.get(model.__name__) == set(model.model_fields), kind
    # And every kind's row names its models.
    for kind in t.ActionKind:
        assert f"| `{kind.value}` | [{t.PAYLOADS[kind][0].__name__}]" in reference


def test_every_kind_has_its_payload_models() -> None:
    assert set(t.PAYLOADS) == set(t.ActionKind)
    assert {"build_image", "push_image"} <= {k.value for k in t.ActionKind}  # docs/images.md


def test_the_schema_names_its_version() -> None:
    generated = schema.json_schema()
    assert generated["$id"] == t.PLAN_SCHEMA == "mlops-plan/v2"
    assert generated["properties"]["format_version"]["const"] == 2
    assert generated["properties"]["schema_version"]["const"] == t.PLAN_SCHEMA


@pytest.mark.parametrize("name", ["rollout", "first-deploy", "config", "delete", "no-changes"])
def test_golden_plans_validate_against_the_schema(name: str) -> None:
    document = json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema.json_schema()).validate(document)


def _rollout() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((GOLDEN / "rollout.json").read_text(encoding="utf-8"))
    return document


def test_a_payload_of_another_kind_is_refused_by_schema_and_models() -> None:
    document = _rollout()
    load = next(a for a in document["actions"] if a["kind"] == "load")
    verify = next(a for a in document["actions"] if a["kind"] == "verify")
    # A verify payload under a load: valid JSON for some kind, not for this one.
    load["after"] = verify["after"]
    validator = jsonschema.Draft202012Validator(schema.json_schema())
    assert not validator.is_valid(document)
    with pytest.raises(ValueError, match="settings"):
        t.Plan.model_validate(document)


def test_an_unknown_payload_key_is_refused_by_schema_and_models() -> None:
    document = _rollout()
    document["actions"][0]["after"]["run"] = "rm -rf /"
    assert not jsonschema.Draft202012Validator(schema.json_schema()).is_valid(document)
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        t.Plan.model_validate(document)


def test_rollback_entries_are_typed_actions() -> None:
    plan = t.Plan.model_validate(_rollout())
    steps = [s for by_anchor in plan.rollback.values() for ss in by_anchor.values() for s in ss]
    assert steps and all(isinstance(s, t.Action) for s in steps)
    allowed: set[type[t.Payload]] = {t.TrafficPayload, t.RetirePayload, t.PromotePayload}
    assert {type(s.after) for s in steps} <= allowed
    assert all(s.model == s.id.split("/", 1)[0] for s in steps)


def test_the_module_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert schema.main([]) == 0
    assert json.loads(capsys.readouterr().out) == schema.json_schema()
    assert schema.main(["--markdown"]) == 0
    assert capsys.readouterr().out.startswith("### Payloads by kind")
    assert schema.main(["--bogus"]) == 2
