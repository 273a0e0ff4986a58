"""Valid specs: the example workspace, several documents per file, JSON output, digests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops import errors
from mlops.spec import load
from tests.spec.conftest import GOOD, good, snapshot
from tests.support import Runner

REPO = Path(__file__).resolve().parents[2]


def test_example_workspace_validates(run: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    result = run("validate", "specs/")
    assert result.code == 0, result.err
    assert "fraud-scorer 1.0.0" in result.out
    config = load.load_workspace_config(REPO / "mlops.yaml")
    assert config.target == "local" and config.serve.port == 8480


def test_example_signature_is_what_the_trainer_exports() -> None:
    # The trainer pins these names; the spec must match them exactly (checked by conformance).
    (item,) = load.load_specs([REPO / "specs"], REPO)
    model = item.deployment.spec.model
    assert [(t.name, t.dtype.value, t.shape) for t in model.signature.inputs] == [
        ("input", "FP32", [-1, 30])
    ]
    assert [(t.name, t.dtype.value, t.shape) for t in model.signature.outputs] == [
        ("label", "INT64", [-1]),
        ("probabilities", "FP32", [-1, 2]),
    ]
    assert item.artifact_path == REPO / "models" / "fraud-scorer-1.0.0.onnx"
    assert item.validation_path == REPO / "data" / "fraud-scorer-val.npz"


def test_several_documents_per_file(ws: Path, run: Runner) -> None:
    (ws / "specs" / "all.yaml").write_text(
        "---\n" + good("fraud-scorer") + "---\n" + good("churn", "2.0.0") + "...\n"
    )
    before = snapshot(ws.parent)
    result = run("validate", "--format", "json")
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert document["valid"] is True and document["problems"] == []
    assert [(d["name"], d["version"]) for d in document["deployments"]] == [
        ("churn", "2.0.0"),
        ("fraud-scorer", "1.0.0"),
    ]
    assert len(document["spec_digest"]) == 64
    assert snapshot(ws.parent) == before


def test_files_and_directories_mixed(ws: Path, run: Runner) -> None:
    (ws / "specs" / "a.yaml").write_text(good("a"))
    (ws / "specs" / "team").mkdir()
    (ws / "specs" / "team" / "b.yml").write_text(good("b"))
    (ws / "specs" / "notes.txt").write_text("not a spec")
    result = run("validate", "specs/team", "specs/a.yaml")
    assert result.code == 0, result.err
    assert "2 deployments valid." in result.out


def test_positions_are_recorded_for_later_errors(ws: Path) -> None:
    (ws / "specs" / "a.yaml").write_text(GOOD)
    (item,) = load.load_specs(["specs"], ws)
    assert item.where("spec", "model", "version") == "specs/a.yaml:7:14"
    assert item.where("spec", "rollout", "steps", 2, "weight") == "specs/a.yaml:26:18"
    # A field absent from the file points at its nearest parent.
    assert item.where("spec", "model", "sha256") == "specs/a.yaml:6:3"


def test_models_uri_has_no_local_path(ws: Path) -> None:
    text = GOOD.replace("../models/fraud-scorer-1.0.0.onnx", "models:/fraud-scorer/3")
    (ws / "specs" / "a.yaml").write_text(text)
    (item,) = load.load_specs(["specs"], ws, check_files=True)
    assert item.artifact_path is None
    assert item.deployment.spec.model.artifact == "models:/fraud-scorer/3"


def test_merge_keys_and_anchors_are_plain_yaml(ws: Path) -> None:
    text = GOOD.replace(
        "      - {metric: error_rate, max: 0.01}",
        "      - &err {metric: error_rate, max: 0.01}",
    ).replace(
        "      - {metric: latency_p99, max_increase: 0.5}",
        "      - {<<: *err, max: 0.02}",
    )
    (ws / "specs" / "a.yaml").write_text(text)
    (item,) = load.load_specs(["specs"], ws)
    gates = item.deployment.spec.rollout.gates
    assert [(g.metric, g.max) for g in gates] == [("error_rate", 0.01), ("error_rate", 0.02)]


def test_digest_ignores_order_and_layout_but_not_content(ws: Path) -> None:
    (ws / "specs" / "a.yaml").write_text(good("a"))
    (ws / "specs" / "b.yaml").write_text(good("b"))
    forward = load.load_specs(["specs/a.yaml", "specs/b.yaml"], ws)
    backward = load.load_specs(["specs/b.yaml", "specs/a.yaml"], ws)
    assert load.spec_digest(forward) == load.spec_digest(reversed(backward))
    (ws / "specs" / "b.yaml").write_text("# moved keys, same meaning\n" + good("b"))
    assert load.spec_digest(load.load_specs(["specs"], ws)) == load.spec_digest(forward)
    (ws / "specs" / "b.yaml").write_text(good("b", "1.0.1"))
    assert load.spec_digest(load.load_specs(["specs"], ws)) != load.spec_digest(forward)


def test_empty_workspace_config_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "mlops.yaml"
    path.write_text("# defaults only\n")
    config = load.load_workspace_config(path)
    assert config.metrics == "builtin" and config.registry_uri is None


def test_spec_error_carries_every_problem(ws: Path) -> None:
    (ws / "specs" / "a.yaml").write_text(GOOD.replace("FP32", "FP23"))
    with pytest.raises(errors.SpecError) as caught:
        load.load_specs(["specs"], ws)
    problems = caught.value.problems
    assert len(problems) == 2
    assert all(isinstance(p, load.Problem) for p in problems)
    # Other commands print the message as is: it lists every problem line.
    assert caught.value.message.splitlines() == [str(p) for p in problems]


def test_relative_paths_start_in_the_workspace_when_run_from_outside(
    ws: Path, run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As `mlops -C build/demo validate specs/` from the repository root: specs/ is the
    # workspace's, not the current directory's.
    (ws / "specs" / "a.yaml").write_text(good("a"))
    monkeypatch.chdir(ws.parent)
    (ws.parent / "specs").mkdir()
    (ws.parent / "specs" / "decoy.yaml").write_text("not: a spec\n")
    result = run("-C", str(ws), "validate", "specs/")
    assert result.code == 0, result.err
    assert "ok  a 1.0.0  (ws/specs/a.yaml)" in result.out
    assert run("-C", str(ws), "validate").code == 0


def test_relative_paths_start_in_the_current_directory_inside_the_workspace(
    ws: Path, run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    (ws / "specs" / "a.yaml").write_text(good("a"))
    monkeypatch.chdir(ws / "specs")
    result = run("validate", "a.yaml")
    assert result.code == 0, result.err
    assert "(a.yaml)" in result.out
    default = run("validate")
    assert default.code == 0 and "(a.yaml)" in default.out
