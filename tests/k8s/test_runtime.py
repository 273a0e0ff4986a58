"""KubernetesRuntime through the official client against an API server double: the bodies the
cluster receives are the objects `render_manifests` prints, and they pass the schemas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops import errors, workspace
from mlops.plan import payloads
from mlops.providers import factory
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
        "target: kubernetes\nkubernetes: {namespace: models, gateway_ref: gateways/inference,"
        " registry_uri: 'http://mlflow.mlops.svc:5000'}\n"
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
    rendered = k8s.render_manifests(item.deployment, version, runtime.options)
    settings = payloads.engine_settings(item.deployment)
    assert runtime.reachable()

    runtime.load("fraud-scorer", "1.0.0", item.artifact_path, settings)
    sent = server.applied
    assert [o["kind"] for o in sent] == [
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "HTTPRoute",
    ]
    assert sent[:4] == rendered[:4]
    for obj in sent[:4]:
        c.assert_core_valid(obj)
    env = {
        e["name"]: e["value"]
        for e in sent[1]["spec"]["template"]["spec"]["initContainers"][0]["env"]
    }
    assert env["MODEL_URI"] == f"models:/fraud-scorer/{version.registry_version}"
    assert env["MODEL_SHA256"] == version.sha256

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


def test_local_registry_is_refused_before_anything_is_applied(
    runtime: k8s.KubernetesRuntime, server: ApiServer
) -> None:
    runtime.options = c.options(registry_uri="sqlite:///tmp/x.db")
    with pytest.raises(errors.ConfigError, match="registry"):
        runtime.load("fraud-scorer", "1.0.0", Path("x"), {})
    assert server.applied == []


def test_unreachable_cluster(runtime: k8s.KubernetesRuntime, server: ApiServer) -> None:
    server.close()
    assert runtime.reachable() is False
    with pytest.raises(errors.TransientError):
        runtime.refresh()
    assert m.SELECTOR == "app.kubernetes.io/managed-by=mlops"
