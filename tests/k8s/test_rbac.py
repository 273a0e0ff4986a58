"""Least privilege: `mlops manifests --rbac` renders the controller's ServiceAccount, Role and
RoleBinding (its namespace only, no wildcards), and every API call the runtime makes against
the API-server double, verb by verb, is one that Role allows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops import api, cli, workspace
from mlops.plan import payloads
from mlops.providers import factory
from mlops.providers.kubernetes import rbac
from mlops.providers.kubernetes import runtime as k8s
from mlops.spec import load
from mlops.state import models as state
from tests.k8s import conftest as c
from tests.k8s.apiserver import ApiServer

SAME_NAMESPACE = "target: kubernetes\nkubernetes: {namespace: models, gateway_ref: inference}\n"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        cli.main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in [str(k), *strings(v)]]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return [str(node)]


def test_rendered_rbac_is_namespaced_without_wildcards(
    k8s_workspace: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(k8s_workspace)
    (k8s_workspace / "mlops.yaml").write_text(SAME_NAMESPACE)
    code, out, err = run(["manifests", "--rbac"], capsys)
    assert code == 0 and err == "", err
    objects = list(yaml.safe_load_all(out))
    assert [o["kind"] for o in objects] == ["ServiceAccount", "Role", "RoleBinding"]
    for obj in objects:
        c.assert_core_valid(obj)
        assert obj["metadata"]["namespace"] == "models"
        assert not any("*" in text for text in strings(obj))
    role = objects[1]
    assert role["kind"] == "Role"  # never a ClusterRole
    (gateway,) = [r for r in role["rules"] if "gateways" in r["resources"]]
    assert (gateway["resourceNames"], gateway["verbs"]) == (["inference"], ["get"])
    subject = objects[2]["subjects"][0]
    assert (subject["name"], subject["namespace"]) == (objects[0]["metadata"]["name"], "models")

    # A Gateway in another namespace: not granted here, and said so on stderr.
    (k8s_workspace / "mlops.yaml").write_text(
        "target: kubernetes\nkubernetes: {namespace: models, gateway_ref: gateways/inference}\n"
    )
    code, out, err = run(["manifests", "--rbac"], capsys)
    assert code == 0 and "Note: the Role covers namespace models only" in err
    assert "gateways" not in str(list(yaml.safe_load_all(out))[1]["rules"])
    code, _, err = run(["manifests", "--rbac", "--model-version", "3"], capsys)
    assert code == 1 and "--rbac takes no" in err


def test_allows_reads_rules_as_the_authorizer_does() -> None:
    rules = rbac.controller_rbac(c.options(gateway=None))[1]["rules"]
    assert rbac.allows(rules, "patch", "apps", "deployments", "x")
    assert not rbac.allows(rules, "patch", "", "pods", "x")
    assert not rbac.allows(rules, "delete", "", "secrets", "x")
    named = rbac.controller_rbac(c.options(gateway=None).__class__(namespace="models"))
    assert all("gateways" not in r["resources"] for r in named[1]["rules"])


@pytest.mark.slow  # a real MLflow registry, the whole runtime cycle, status through the API
def test_every_api_call_stays_within_the_rendered_role(
    k8s_workspace: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = ApiServer()
    try:
        monkeypatch.setenv("KUBECONFIG", str(server.kubeconfig(tmp_path / "kubeconfig")))
        (k8s_workspace / "mlops.yaml").write_text(SAME_NAMESPACE)
        ws = workspace.open_workspace(k8s_workspace)
        runtime = factory.runtime(ws)
        assert isinstance(runtime, k8s.KubernetesRuntime)
        runtime.poll_seconds = 0.01
        (item,) = load.load_specs([ws.root / "specs"], ws.root)
        assert item.artifact_path is not None
        runtime.registry.register(item.deployment, item.artifact_path, item.validation_path)
        runtime.registry.record_image("fraud-scorer", "1.0.0", c.IMAGE.split("@")[1], c.IMAGE)
        settings = payloads.engine_settings(item.deployment)

        # Every kind of call the controller makes: apply, wait, route, shadow, status, reconcile.
        assert runtime.reachable()
        runtime.ensure_running(1)
        runtime.load("fraud-scorer", "1.0.0", item.artifact_path, settings)
        runtime.set_traffic("fraud-scorer", {"1.0.0": 100}, None)
        runtime.set_traffic(
            "fraud-scorer", {"1.0.0": 100}, state.ShadowRoute(version="1.0.0", percent=0)
        )
        document = api.status(workspace=str(ws.root))
        assert document["cluster"]["models"]["fraud-scorer"]["versions"]["1.0.0"]["pods"]
        runtime.ensure_running(1)
        runtime.set_traffic("fraud-scorer", {}, None)
        runtime.unload("fraud-scorer", "1.0.0")

        rules = rbac.controller_rbac(runtime.options)[1]["rules"]
        calls = sorted(set(server.verbs))
        outside = [
            call
            for call in calls
            if call[3] != "models" or not rbac.allows(rules, call[0], call[1], call[2], call[4])
        ]
        assert outside == [], outside
        used = {(verb, resource) for verb, _, resource, _, _ in calls}
        # The Role is not wider than needed: each write verb it grants was used.
        for verb in ("get", "list", "create", "patch", "delete"):
            assert any(v == verb for v, _ in used), verb
        print(json.dumps(sorted(used)))
    finally:
        server.close()
