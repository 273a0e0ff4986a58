"""Artifact references are checked by `validate` (issue 9 #15): percent-encoding, schemes and
names give one clear problem on the field, `plan` refuses the spec the same way, and what
validate accepts is exactly what apply's checks (providers.artifact_refs) accept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops import errors
from mlops.providers.mlflow import artifact_refs
from mlops.spec import refs
from tests.spec.conftest import GOOD, snapshot
from tests.support import Runner

SPEC = "specs/fraud-scorer.yaml"
ARTIFACT = "../models/fraud-scorer-1.0.0.onnx"

# (reference, words the one problem must contain)
REFUSED = [
    ("models:/fraud-scorer/%2e%2e", "percent-encoded"),
    ("models:/fraud-scorer/%252e%252e", "percent-encoded"),
    ("models:/fraud-scorer%2f1/1", "percent-encoded"),
    ("models:/fraud-scorer/..", "neither a semantic version"),
    ("models:/fraud-scorer/1/extra", "one name, one version"),
    ("models:/../../etc/passwd", "one name, one version"),
    ("models:/Fraud/1", "not a model name"),
    ("models:/fraud-scorer/1.0", "neither a semantic version"),
    ("models:/fraud-scorer@latest", "not an alias"),
    ("models:/fraud-scorer@bad alias", "not an alias"),
    ("models:/fraud-scorer/1#x", "'#' or '?'"),
    ("models:/fraud-scorer@stable?../../etc", "'#' or '?'"),
    ("models:fraud-scorer/1", "is not models:/NAME/VERSION"),
    ("file:///etc/passwd", "is a file: URI"),
    ("http://127.0.0.1:9/model.onnx", "is a http: URI"),
    ("s3://bucket/model.onnx", "is a s3: URI"),
    ("C:/models/model.onnx", "is a C: URI"),
    ("../models/fraud-scorer-1.0.0.onnx#/../../x", "'#' or '?'"),
]

ACCEPTED = [
    "models:/fraud-scorer/3",
    "models:/fraud-scorer/1.2.0",
    "models:/fraud-scorer/1.0.0-rc.1+build.5",
    "models:/fraud-scorer@stable",
    "models/fraud-scorer.onnx",
    "fraud scorer 100%.onnx",  # a '%' in a file name is a file name
]


def _write(ws: Path, artifact: str) -> None:
    (ws / SPEC).write_text(GOOD.replace(ARTIFACT, json.dumps(artifact)))


@pytest.mark.parametrize(("ref", "words"), REFUSED, ids=[r for r, _ in REFUSED])
def test_validate_gives_one_clear_problem_per_reference(
    ws: Path, run: Runner, ref: str, words: str
) -> None:
    _write(ws, ref)
    before = snapshot(ws.parent)
    for extra in ((), ("--check-files",)):
        result = run("validate", "--format", "json", *extra)
        assert result.code == 1, result
        problems = json.loads(result.out)["problems"]
        # One problem, on the field: not a second, misleading "does not exist".
        assert len(problems) == 1, problems
        (problem,) = problems
        assert problem["field"] == "spec.model.artifact" and problem["line"] == 8
        assert words in problem["message"], problem["message"]
    assert snapshot(ws.parent) == before


@pytest.mark.parametrize(("ref", "words"), REFUSED[:3], ids=[r for r, _ in REFUSED[:3]])
def test_plan_refuses_the_spec_before_reading_any_state(
    ws: Path, run: Runner, ref: str, words: str
) -> None:
    _write(ws, ref)
    result = run("plan")
    assert result.code == 1
    assert words in result.err and "spec.model.artifact" in result.err
    assert "Traceback" not in result.err and not (ws / ".mlops").exists()


@pytest.mark.parametrize(("ref", "words"), REFUSED, ids=[r for r, _ in REFUSED])
def test_apply_side_refuses_the_same_references(ref: str, words: str) -> None:
    with pytest.raises(errors.ArtifactError) as caught:
        if refs.is_models_uri(ref):
            artifact_refs.parse_models_uri(ref)
        else:
            artifact_refs.local_path(ref, Path("/nonexistent-root"))
    assert words in caught.value.message


@pytest.mark.parametrize("ref", ACCEPTED)
def test_accepted_references_validate_and_pass_the_apply_side_checks(
    ws: Path, run: Runner, ref: str
) -> None:
    if not refs.is_models_uri(ref):
        (ws / "specs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (ws / "specs" / ref).write_bytes(b"onnx")
    _write(ws, ref)
    result = run("validate", "--check-files")
    assert result.code == 0, result.err
    if refs.is_models_uri(ref):
        parsed = artifact_refs.parse_models_uri(ref)
        assert parsed.name == "fraud-scorer"
    else:
        assert artifact_refs.local_path(ref, ws / "specs") == (ws / "specs" / ref).resolve()


def test_validation_data_with_a_scheme_is_one_problem(ws: Path, run: Runner) -> None:
    text = GOOD.replace("../data/fraud-scorer-val.npz", "file:///etc/val.npz")
    (ws / SPEC).write_text(text)
    result = run("validate", "--format", "json", "--check-files")
    problems = json.loads(result.out)["problems"]
    assert [p["field"] for p in problems] == ["spec.model.validation.data"]
    assert "is a file: URI" in problems[0]["message"]


def test_references_have_bounded_length_and_decoding() -> None:
    with pytest.raises(ValueError, match="longer than"):
        refs.check_artifact("models:/a/" + "1" * 5000)
    with pytest.raises(ValueError, match="too many times"):
        refs.unquoted("%" + "25" * 10 + "2e")
