"""`mlops manifests` through the real entry point: YAML that parses back to the same objects."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from mlops import cli
from tests.k8s import conftest as c


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        cli.main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_manifests_stdout_and_files(
    k8s_workspace: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(k8s_workspace)
    code, out, err = run(["manifests", "--model-version", "3", "--image", c.IMAGE], capsys)
    assert code == 0, err
    objects = list(yaml.safe_load_all(out))
    kinds = ["ConfigMap", "Deployment", "Service", "ScaledObject", "HTTPRoute"]
    assert [o["kind"] for o in objects] == kinds
    for obj in objects[:3]:
        c.assert_core_valid(obj)
    for obj in objects[3:]:
        assert c.crd_problems(obj) == []
    assert objects[1]["spec"]["template"]["spec"]["containers"][0]["image"] == c.IMAGE
    assert "settings.json: |" in out  # readable, not an escaped one-liner
    (k8s_workspace / "mlops.yaml").write_text(
        "target: kubernetes\nkubernetes: {namespace: models, gateway_ref: gateways/inference,"
        f" engine: triton, image: '{c.TRITON}'}}\n"
    )
    argv = ["manifests", "--model-version", "3", "--image", c.IMAGE]
    code, out, err = run([*argv, "-o", "deploy"], capsys)
    assert code == 0, err
    config = (k8s_workspace / "deploy" / "fraud-scorer" / "config.pbtxt").read_text()
    assert list(text_format.Parse(config, pb.ModelConfig()).version_policy.specific.versions) == [3]
    route = yaml.safe_load(
        (k8s_workspace / "deploy" / "fraud-scorer" / "httproute.yaml").read_text()
    )
    assert route["spec"]["rules"][-1] == objects[-1]["spec"]["rules"][-1]


def test_manifests_refuses_bad_input(
    k8s_workspace: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(k8s_workspace)
    argv = ["manifests", "--model-version", "3", "--image", c.IMAGE]
    code, _, err = run([*argv, "-o", "/tmp/outside-ws"], capsys)
    assert code == 1 and "outside the workspace" in err and "Traceback" not in err
    code, _, err = run(["manifests", "--model-version", "0"], capsys)
    assert code == 1
    # A version with no recorded image and no --image: the fix in one line.
    code, _, err = run(["manifests", "--model-version", "3"], capsys)
    assert code == 1 and "images:" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(["manifests", "--model-version", "3", "--image", "x/y:1"], capsys)
    assert code == 1 and "by digest" in err and "Traceback" not in err
    # Not registered in the (empty) local registry and no --model-version: one clear line.
    code, _, err = run(["manifests"], capsys)
    assert code == 1 and "not registered" in err and len(err.strip().splitlines()) == 1
    assert not (k8s_workspace / "deploy").exists()


def test_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["manifests", "--help"], capsys)
    assert code == 0 and "mlops manifests -o deploy/" in out
