"""KubernetesRuntime through the official client against an API server double: the bodies the
cluster receives are the objects `render_manifests` prints, and they pass the schemas."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops import errors, workspace
from mlops.plan import payloads
from mlops.providers import factory
from mlops.providers.kubernetes import cluster as k8s_cluster
from mlops.providers.kubernetes import manifests as m
from mlops.providers.kubernetes import runtime as k8s
from mlops.spec import load
from tests.k8s import conftest as c
from tests.k8s.apiserver import ApiServer


@pytest.fixture
def server() -> Iterator[ApiServer]:
    api = ApiServer()
    yield api
    api.close()


@pytest.fixture
def runtime(
    k8s_workspace: Path, server: ApiServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> k8s.KubernetesRuntime:
    monkeypatch.setenv("KUBECONFIG", str(server.kubeconfig(tmp_path / "kubeconfig")))
    # Pods reach the registry by its Service name, not the workspace's local address.
    (k8s_workspace / "mlops.yaml").write_text(
        "target: kubernetes\nkubernetes: {namespace: models, gateway_ref: gateways/inference}\n"
    )
    runtime = factory.runtime(workspace.open_workspace(k8s_workspace))
    assert isinstance(runtime, k8s.KubernetesRuntime)
    runtime.poll_seconds = 0.01
    return runtime


@pytest.mark.slow  # registers in a real MLflow registry (seconds)
def test_runtime_sends_exactly_the_rendered_objects(
    runtime: k8s.KubernetesRuntime, server: ApiServer
) -> None:
    (item,) = load.load_specs([runtime.workspace.root / "specs"], runtime.workspace.root)
    assert item.artifact_path is not None  # a file in the workspace, not a models:/ URI
    # A real MLflow registry: the Deployment pins its integer version and sha256.
    version = runtime.registry.register(item.deployment, item.artifact_path, item.validation_path)
    # Not built yet: loading it is refused before anything is applied, with the fix.
    settings = payloads.engine_settings(item.deployment)
    with pytest.raises(errors.RegistryError, match="images:"):
        runtime.load("fraud-scorer", "1.0.0", item.artifact_path, settings)
    assert server.applied == []
    # What apply records after the push (registry tags image_reference / image_digest).
    runtime.registry.record_image("fraud-scorer", "1.0.0", c.IMAGE.split("@")[1], c.IMAGE)
    version = runtime.registry.get_version("fraud-scorer", "1.0.0") or version
    assert k8s.image_of(version) == c.IMAGE
    rendered = k8s.render_manifests(item.deployment, version, runtime.options)
    assert runtime.reachable()

    runtime.load("fraud-scorer", "1.0.0", item.artifact_path, settings)
    sent = server.applied
    assert [o["kind"] for o in sent] == [
        "ConfigMap",
        "Deployment",
        "Service",
        "ScaledObject",
        "ConfigMap",  # the model's remote-shadow file, before the route (empty: no shadow)
        "HTTPRoute",
    ]
    assert json.loads(sent[4]["data"]["shadow.json"]) == {"shadows": {}}
    assert sent[:4] == rendered[:4]
    for obj in sent[:3]:
        c.assert_core_valid(obj)
    assert c.crd_problems(sent[3]) == []
    pod = sent[1]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == c.IMAGE and "initContainers" not in pod
    assert sent[1]["metadata"]["annotations"]["mlops.dev/sha256"] == version.sha256

    generation = runtime.set_traffic("fraud-scorer", {"1.0.0": 100}, None)
    assert sent[-1] == rendered[-1]
    assert generation == 2  # the pinned-only route, then the weighted one

    calls = len(server.calls)
    before = (server.lists("deployments"), server.lists("httproutes"))
    live = runtime.refresh()["fraud-scorer"]
    assert (live.loaded, live.weights, live.generation) == ({"1.0.0": "ready"}, {"1.0.0": 100}, 2)
    assert live.config["1.0.0"] == settings
    assert (server.lists("deployments"), server.lists("httproutes")) == (
        before[0] + 1,
        before[1] + 1,
    )
    assert len(server.calls) - calls == 2  # one list per kind, not per model

    with pytest.raises(errors.PermanentError, match="still receives traffic"):
        runtime.unload("fraud-scorer", "1.0.0")
    runtime.set_traffic("fraud-scorer", {}, None)
    runtime.unload("fraud-scorer", "1.0.0")
    assert server.store == {}
    assert runtime.refresh() == {}
    runtime.unload("fraud-scorer", "1.0.0")  # idempotent


def test_unknown_context_is_a_config_error(runtime: k8s.KubernetesRuntime) -> None:
    from mlops.providers.kubernetes import cluster as k8s_cluster

    runtime._cluster = k8s_cluster.DynamicCluster("no-such-context", "models")
    with pytest.raises(errors.ConfigError, match="no-such-context"):
        runtime.refresh()


def test_unreachable_cluster(runtime: k8s.KubernetesRuntime, server: ApiServer) -> None:
    server.close()
    assert runtime.reachable() is False
    with pytest.raises(errors.TransientError):
        runtime.refresh()
    assert m.SELECTOR == "app.kubernetes.io/managed-by=mlops"


@pytest.mark.slow  # plans against a real MLflow registry (seconds)
def test_plan_without_images_is_an_error_naming_the_fix(runtime: k8s.KubernetesRuntime) -> None:
    from mlops import api

    plan = api.plan(str(runtime.workspace.root))
    assert any("fraud-scorer@1.0.0 has no image on record" in e for e in plan.errors), plan.errors
    assert any("configure images:" in e for e in plan.errors)


def _serving(root: Path, replicas: int) -> None:
    """The workspace's spec with a fixed replica count (no autoscaling)."""
    path = root / "specs" / "fraud-scorer.yaml"
    text = path.read_text().replace("    autoscaling: {metric: queue_depth, target: 8}\n", "")
    text = re.sub(
        r"replicas: \{min: \d+, max: \d+\}", f"replicas: {{min: {replicas}, max: {replicas}}}", text
    )
    path.write_text(text)


@pytest.mark.slow  # a real MLflow registry, the CLI and a dozen API calls
def test_reconcile_and_report_without_a_gateway_address(
    runtime: k8s.KubernetesRuntime, server: ApiServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlops import cli

    root = runtime.workspace.root
    _serving(root, 2)
    (item,) = load.load_specs([root / "specs"], root)
    assert item.artifact_path is not None
    runtime.registry.register(item.deployment, item.artifact_path, item.validation_path)
    runtime.registry.record_image("fraud-scorer", "1.0.0", c.IMAGE.split("@")[1], c.IMAGE)
    runtime.load(
        "fraud-scorer", "1.0.0", item.artifact_path, payloads.engine_settings(item.deployment)
    )
    runtime.set_traffic("fraud-scorer", {"1.0.0": 100}, None)
    workload = m.workload_name("fraud-scorer", "1.0.0")

    def status(*args: str) -> tuple[int, str]:
        try:
            cli.main(["-C", str(root), "status", *args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        return code, capsys.readouterr().out

    # No Gateway object, so no address: status says what is missing and exits 0.
    code, text = status()
    assert code == 0, text
    assert "inference url: none (gateway inference has no address yet)" in text
    assert "pods 1.0.0: 2/2 ready (replicas owned by mlops)" in text
    assert "route fraud-scorer generation 2: accepted" in text
    code, raw = status("--format", "json")
    document = json.loads(raw)
    report = document["cluster"]["models"]["fraud-scorer"]
    pods = report["versions"]["1.0.0"]["pods"]
    assert [p["ready"] for p in pods] == [True, True] and len(pods) == 2
    assert report["route"]["weights"] == {"1.0.0": 100}
    assert report["route"]["accepted"]["status"] is True
    assert document["cluster"]["gateway"]["missing"] == "Gateway gateways/inference does not exist"

    # The spec now asks for 3: ensure_running reconciles the Deployment mlops sizes.
    _serving(root, 3)
    runtime.ensure_running(1)
    assert server.store[("deployments", "models", workload)]["spec"]["replicas"] == 3
    assert len(runtime.cluster_report()["models"]["fraud-scorer"]["versions"]["1.0.0"]["pods"]) == 3

    # Someone's HPA takes spec.replicas over: reported with the field and its owner, not forced.
    server.patch_as("kube-controller-manager", "deployments", workload, {"spec": {"replicas": 5}})
    _serving(root, 4)
    with pytest.raises(k8s_cluster.FieldConflict) as caught:
        runtime.ensure_running(1)
    assert caught.value.owners == [(".spec.replicas", "kube-controller-manager")]
    assert "never" not in caught.value.message and "does not force" in caught.value.message
    assert server.store[("deployments", "models", workload)]["spec"]["replicas"] == 5
    code, text = status()
    assert code == 0 and "5/5 ready (replicas owned by kube-controller-manager)" in text
