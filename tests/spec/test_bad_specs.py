"""Every bad spec exits 1 through the real CLI, names file, line and field, and writes nothing."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.spec.conftest import GOOD, good, snapshot
from tests.support import Runner

SPEC = "specs/fraud-scorer.yaml"


def bad(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


def billion_laughs() -> str:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    previous = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
        previous = name
    return "\n".join(lines) + "\n"


def symlink_out(root: Path) -> None:
    os.symlink(root.parent / "outside" / "secret.onnx", root / "models" / "evil.onnx")


@dataclass(frozen=True)
class Case:
    id: str
    content: str | bytes | None  # written to `file`; None: write nothing
    line: int
    field: str  # "" for whole-file problems
    message: str
    file: str = SPEC
    # dataclasses.field in full: the `field` attribute above shadows the bare name here.
    extra: dict[str, str] = dataclasses.field(default_factory=dict)
    setup: Callable[[Path], None] | None = None
    args: tuple[str, ...] = ()


CASES = [
    # documents and YAML
    Case("empty-file", "", 1, "", "file is empty"),
    Case("comments-only", "# nothing here\n", 1, "", "file is empty"),
    Case("binary-file", b"\x7fELF\x02\x01\x00\x00binary", 1, "", "binary file"),
    Case("not-utf8", b"apiVersion: mlops/v1\nkind: \xff\xfe\n", 2, "", "not UTF-8"),
    Case("oversized", "#" + "x" * (1 << 20) + "\n", 1, "", "limit is"),
    Case("syntax-error", bad("{weight: 100}", "{weight: 100"), 27, "", "YAML syntax error"),
    Case("not-a-mapping", "- just\n- a list\n", 1, "", "must be a mapping"),
    Case(
        "duplicate-key",
        bad("format: onnx", "version: 1.0.1"),
        9,
        "spec.model.version",
        "duplicate key 'version' (first at line 7)",
    ),
    Case(
        "python-tag",
        bad(
            "artifact: ../models/fraud-scorer-1.0.0.onnx",
            'artifact: !!python/object/apply:os.system ["touch pwned"]',
        ),
        8,
        "spec.model.artifact",
        "not allowed",
    ),
    Case(
        "custom-tag",
        bad("format: onnx", "format: !include other.yaml"),
        9,
        "spec.model.format",
        "not allowed",
    ),
    Case("billion-laughs", billion_laughs(), 1, "", "alias expansion"),
    Case("recursive-alias", "a: &a [*a]\n", 1, "a[0]", "recursive alias"),
    Case(
        "second-document-bad",
        GOOD + "---\n" + good("other").replace("FP32", "FP33", 1),
        31 + 12,
        "spec.model.signature.inputs[0].dtype",
        "did you mean 'FP32'",
    ),
    # header and names
    Case("wrong-api-version", bad("mlops/v1", "mlops/v2"), 1, "apiVersion", "mlops/v1"),
    Case(
        "wrong-kind", bad("kind: ModelDeployment", "kind: Deployment"), 2, "kind", "ModelDeployment"
    ),
    Case(
        "missing-name",
        bad("metadata:\n  name: fraud-scorer", "metadata: {}"),
        3,
        "metadata.name",
        "required field is missing",
    ),
    Case(
        "bad-name", bad("name: fraud-scorer", "name: Fraud_Scorer"), 4, "metadata.name", "DNS-1123"
    ),
    Case(
        "unknown-field",
        bad("format: onnx", "formt: onnx"),
        9,
        "spec.model.formt",
        "did you mean 'format'?",
    ),
    Case(
        "unknown-rollout-field",
        bad("strategy: canary", "stratgy: canary"),
        22,
        "spec.rollout.stratgy",
        "did you mean 'strategy'?",
    ),
    # model section
    Case(
        "missing-signature",
        bad("    signature:\n", "    signatures:\n"),
        10,
        "spec.model.signatures",
        "did you mean 'signature'?",
    ),
    Case("missing-model", bad("  model:\n", "  mode:\n"), 6, "spec.mode", "did you mean 'model'?"),
    Case(
        "semver-float",
        bad("version: 1.0.0", "version: 1.0"),
        7,
        "spec.model.version",
        "not a semantic version",
    ),
    Case(
        "semver-garbage",
        bad("version: 1.0.0", "version: one"),
        7,
        "spec.model.version",
        "not a semantic version",
    ),
    Case(
        "bad-sha256",
        bad("format: onnx", "sha256: abc123"),
        9,
        "spec.model.sha256",
        "64 lowercase hex",
    ),
    Case(
        "bad-dtype",
        bad("dtype: FP32, shape: [-1, 30]", "dtype: FP23, shape: [-1, 30]"),
        12,
        "spec.model.signature.inputs[0].dtype",
        "did you mean 'FP32'?",
    ),
    Case(
        "bad-shape-zero",
        bad("shape: [-1, 30]", "shape: [-1, 0]"),
        12,
        "spec.model.signature.inputs[0].shape",
        "positive integer or -1",
    ),
    Case(
        "bad-shape-type",
        bad("shape: [-1, 30]", "shape: 30"),
        12,
        "spec.model.signature.inputs[0].shape",
        "valid list",
    ),
    Case(
        "baseline-out-of-range",
        bad("value: 0.953", "value: 1.2"),
        16,
        "spec.model.baseline.value",
        "less than or equal to 1",
    ),
    Case(
        "wrong-type-p99",
        bad("p99_ms: 15", "p99_ms: fast"),
        16,
        "spec.model.baseline.p99_ms",
        "valid number",
    ),
    # paths
    Case(
        "artifact-dotdot-escape",
        bad("../models/fraud-scorer-1.0.0.onnx", "../../outside/secret.onnx"),
        8,
        "spec.model.artifact",
        "outside the workspace",
    ),
    Case(
        "artifact-absolute-outside",
        bad("../models/fraud-scorer-1.0.0.onnx", "/etc/passwd"),
        8,
        "spec.model.artifact",
        "outside the workspace",
    ),
    Case(
        "artifact-symlink-escape",
        bad("fraud-scorer-1.0.0.onnx", "evil.onnx"),
        8,
        "spec.model.artifact",
        "outside the workspace",
        setup=symlink_out,
    ),
    Case(
        "validation-escape",
        bad("../data/fraud-scorer-val.npz", "../../../val.npz"),
        17,
        "spec.model.validation.data",
        "outside the workspace",
    ),
    Case(
        "validation-data-url",
        bad("../data/fraud-scorer-val.npz", "https://example.com/val.npz"),
        17,
        "spec.model.validation.data",
        "file path inside the workspace",
    ),
    Case(
        "artifact-missing-checked",
        bad("fraud-scorer-1.0.0.onnx", "nope.onnx"),
        8,
        "spec.model.artifact",
        "does not exist",
        args=("--check-files",),
    ),
    # serving
    Case(
        "wrong-type-replicas",
        bad("{min: 1, max: 2}", "{min: one, max: 2}"),
        19,
        "spec.serving.replicas.min",
        "valid integer",
    ),
    Case(
        "replicas-max-below-min",
        bad("{min: 1, max: 2}", "{min: 3, max: 2}"),
        19,
        "spec.serving.replicas",
        "below min",
    ),
    Case(
        "batch-size-zero",
        bad("max_batch_size: 32", "max_batch_size: 0"),
        20,
        "spec.serving.batching.max_batch_size",
        "greater than or equal to 1",
    ),
    # rollout
    Case(
        "weights-not-increasing",
        bad("{weight: 50, hold: 10s}", "{weight: 5, hold: 10s}"),
        23,
        "spec.rollout.steps",
        "increase strictly",
    ),
    Case(
        "weights-not-ending-100",
        bad("{weight: 100}", "{weight: 90}"),
        23,
        "spec.rollout.steps",
        "last step must have weight 100",
    ),
    Case(
        "weight-over-100",
        bad("{weight: 100}", "{weight: 150}"),
        26,
        "spec.rollout.steps[2].weight",
        "less than or equal to 100",
    ),
    Case(
        "bad-duration-unit",
        bad("{weight: 10, hold: 10s}", "{weight: 10, hold: 10d}"),
        24,
        "spec.rollout.steps[0].hold",
        "invalid duration",
    ),
    Case(
        "negative-interval",
        bad("interval: 2s", "interval: -5s"),
        27,
        "spec.rollout.interval",
        "invalid duration",
    ),
    Case(
        "zero-interval",
        bad("interval: 2s", "interval: 0s"),
        27,
        "spec.rollout.interval",
        "must be positive",
    ),
    Case(
        "bad-strategy",
        bad("strategy: canary", "strategy: canry"),
        22,
        "spec.rollout.strategy",
        "did you mean 'canary'?",
    ),
    Case(
        "unknown-gate-metric",
        bad("metric: error_rate", "metric: error_rat"),
        29,
        "spec.rollout.gates[0].metric",
        "did you mean 'error_rate'?",
    ),
    Case(
        "query-gate-without-name",
        bad("{metric: error_rate, max: 0.01}", "{query: 'sum(rate(x[1m]))', min: 0.02}"),
        29,
        "spec.rollout.gates[0]",
        "needs a 'name'",
    ),
    Case(
        "query-gate-without-threshold",
        bad("{metric: error_rate, max: 0.01}", "{name: ctr, query: 'sum(rate(x[1m]))'}"),
        29,
        "spec.rollout.gates[0]",
        "needs 'min' and/or 'max'",
    ),
    Case(
        "threshold-out-of-range",
        bad("{metric: error_rate, max: 0.01}", "{metric: error_rate, max: 1.5}"),
        29,
        "spec.rollout.gates[0]",
        "between 0 and 1",
    ),
    Case(
        "gate-min-above-max",
        bad("{metric: error_rate, max: 0.01}", "{metric: shadow_agreement, min: 0.9, max: 0.5}"),
        29,
        "spec.rollout.gates[0]",
        "above max",
    ),
    # files and workspace
    Case(
        "missing-path",
        None,
        1,
        "",
        "no such file",
        file="specs/nope.yaml",
        args=("specs/nope.yaml",),
    ),
    Case(
        "directory-without-specs",
        None,
        1,
        "",
        "no spec files",
        file="specs",
        extra={"specs/README.txt": "not a spec\n"},
    ),
    Case(
        "duplicate-name-across-files",
        good(),
        4,
        "metadata.name",
        "duplicate name",
        file="specs/z-copy.yaml",
        extra={SPEC: GOOD},
    ),
    Case(
        "config-bad-metrics",
        None,
        2,
        "metrics",
        "builtin",
        file="mlops.yaml",
        extra={"mlops.yaml": "target: local\nmetrics: graphite\n", SPEC: GOOD},
    ),
    Case(
        "config-unknown-key",
        None,
        1,
        "targt",
        "did you mean 'target'?",
        file="mlops.yaml",
        extra={"mlops.yaml": "targt: local\n", SPEC: GOOD},
    ),
]


def _prepare(root: Path, case: Case) -> None:
    for name, text in case.extra.items():
        (root / name).write_text(text)
    if case.content is not None:
        target = root / case.file
        if isinstance(case.content, bytes):
            target.write_bytes(case.content)
        else:
            target.write_text(case.content)
    if case.setup:
        case.setup(root)


def _matching_line(err: str, case: Case) -> str:
    prefix = f"{case.file}:{case.line}:"
    for line in err.splitlines():
        field_ok = not case.field or f": {case.field}: " in line
        if line.startswith(prefix) and case.message in line and field_ok:
            return line
    raise AssertionError(f"no line {prefix} ... {case.field} ... {case.message!r} in:\n{err}")


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 30
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_spec_text(ws: Path, run: Runner, case: Case) -> None:
    _prepare(ws, case)
    before = snapshot(ws.parent)
    result = run("validate", *case.args)
    assert result.code == 1, result
    line = _matching_line(result.err, case)
    assert line.count(":") >= 3
    assert "Traceback" not in result.err + result.out
    assert result.err.rstrip().splitlines()[-1].startswith("Error: ")
    assert snapshot(ws.parent) == before
    assert not (ws / "pwned").exists() and not (ws / ".mlops").exists()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_spec_json(ws: Path, run: Runner, case: Case) -> None:
    _prepare(ws, case)
    before = snapshot(ws.parent)
    result = run("validate", "--format", "json", *case.args)
    assert result.code == 1
    document = json.loads(result.out)
    assert document["valid"] is False and document["deployments"] == []
    assert any(
        p["file"] == case.file
        and p["line"] == case.line
        and p["field"] == case.field
        and case.message in p["message"]
        for p in document["problems"]
    ), document["problems"]
    assert snapshot(ws.parent) == before


def test_every_problem_is_reported_not_only_the_first(ws: Path, run: Runner) -> None:
    text = (
        GOOD.replace("version: 1.0.0", "version: 1.0")
        .replace("dtype: FP32, shape: [-1, 30]", "dtype: FP23, shape: [-1, 30]")
        .replace("../models/fraud-scorer-1.0.0.onnx", "/etc/passwd")
        .replace("metric: error_rate", "metric: error_rat")
    )
    (ws / SPEC).write_text(text)
    (ws / "specs" / "empty.yml").write_text("")
    result = run("validate", "--format", "json")
    assert result.code == 1
    fields = {(p["file"], p["field"]) for p in json.loads(result.out)["problems"]}
    assert fields == {
        (SPEC, "spec.model.version"),
        (SPEC, "spec.model.signature.inputs[0].dtype"),
        (SPEC, "spec.model.artifact"),
        (SPEC, "spec.rollout.gates[0].metric"),
        ("specs/empty.yml", ""),
    }
