"""The kubernetes target end to end on the stand-in cluster, through the `mlops` CLI: plan ->
apply (image built, tested, pushed, recorded by digest) -> the Deployment runs that image as a
real container -> conformance through the proxy's pinned route -> a gated canary whose
HTTPRoute weights the proxy puts in force -> promote, under steady load through the proxy with
zero failed requests; then an erroring image rolled back automatically.

Real components: the API-server double with its kubelet (tests/k8s/kubelet.py: podman
containers, nginx as the gateway, readiness from /v2/health/ready), a real Prometheus scraping
the containers for the gates, the podman service, loopback OCI registry and offline base image
of tests/images/conftest.py, MLflow on sqlite. What this does not prove: docs/kubernetes.md.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from mlops.providers.images import services
from tests.e2e.conftest import NAME, E2EWorkspace, Load, free_port
from tests.images import conftest as images
from tests.images.conftest import Example
from tests.k8s.apiserver import ApiServer
from tests.k8s.kubelet import Kubelet
from tests.k8s.standin import Prometheus

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
# The image tests' session fixtures (podman service, registries, base image, trained example).
stack, client, cache, base, example = (
    images.stack,
    images.client,
    images.cache,
    images.base,
    images.example,
)


class ClusterWorkspace(E2EWorkspace):
    gateway_url: str
    extra_env: dict[str, str]

    def spec(self, version: str, **kwargs: Any) -> Path:
        path = super().spec(version, **kwargs)
        path.write_text(
            path.read_text().replace("replicas: {min: 2, max: 2}", "replicas: {min: 1, max: 1}")
        )
        return path

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.extra_env}

    def url(self) -> str:
        return self.gateway_url  # clients go through the gateway, as on a cluster

    def down(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait(10)


@pytest.fixture(scope="module")
def cluster(
    stack: services.Services,
    client: docker.DockerClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ApiServer, Kubelet, Prometheus]]:
    root = tmp_path_factory.mktemp("standin")
    kubelet = Kubelet(client, root / "kubelet")
    server = ApiServer(kubelet=kubelet)
    server.add_gateway("inference", "models", kubelet.address)
    prometheus = Prometheus(root / "prometheus", [], file_sd=kubelet.targets)
    try:
        yield server, kubelet, prometheus
    finally:
        prometheus.close()
        server.close()
        kubelet.close()


@pytest.fixture(scope="module")
def ws(
    cluster: tuple[ApiServer, Kubelet, Prometheus],
    stack: services.Services,
    base: str,
    example: Example,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ClusterWorkspace]:
    server, kubelet, prometheus = cluster
    trained = example.versions["1.0.0"].artifact.parent.parent  # models/ and data/
    root = tmp_path_factory.mktemp("k8s-e2e") / "ws"
    root.mkdir()
    shutil.copytree(trained / "models", root / "models")
    shutil.copytree(trained / "data", root / "data")
    # The erroring double of 1.1.0 (same answers, fails rows above 50) as version 1.2.0.
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "model_variants.py"), "erroring",
         str(root / "models" / f"{NAME}-1.1.0.onnx"), str(root / "models" / "erroring.onnx")],
        check=True, capture_output=True,
    )  # fmt: skip
    workspace = ClusterWorkspace(root=root, port=free_port(), models=trained)
    workspace.gateway_url = kubelet.url
    kubeconfig = server.kubeconfig(root.parent / "kubeconfig")
    workspace.extra_env = {
        "DOCKER_HOST": stack.docker_url,
        **stack.env,
        "KUBECONFIG": str(kubeconfig),
    }
    (root / "mlops.yaml").write_text(
        f"target: kubernetes\nmetrics: {prometheus.url}\n"
        f"images: {{base: '{base}', repository: {stack.registry}/k8s}}\n"
        "kubernetes: {namespace: models, gateway_ref: inference}\n"
    )
    try:
        yield workspace
    finally:
        workspace.down()


def test_plan_apply_canary_promote_through_the_proxy(
    ws: ClusterWorkspace, cluster: tuple[ApiServer, Kubelet, Prometheus]
) -> None:
    server, kubelet, _ = cluster
    ws.spec("1.0.0")
    plan = ws.mlops("plan", "specs/").output
    assert "build_image" in plan and "push_image" in plan, plan
    ws.mlops("apply", "--auto-approve", "specs/")
    assert kubelet.errors == []
    first = ws.model()
    assert first["weights"] == {"1.0.0": 100}
    deployment = server.store[("deployments", "models", "fraud-scorer-v1-0-0")]
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert "@sha256:" in image
    assert [row["image"] for row in first["versions"] if row["semver"] == "1.0.0"] == [image]

    ws.spec(
        "1.1.0",
        steps=[(10, 4.0), (50, 4.0), (100, 0.0)],
        gates="[{metric: error_rate, max: 0.02}]",
        min_requests=5,
    )
    with Load(ws, rate=60.0, duration=400.0) as load:
        load.wait_answers(50)
        result = ws.mlops("apply", "--auto-approve", "specs/")
        load.wait_answers(50)
    summary = load.summary
    assert summary is not None
    print(f"\ncanary 1.0.0 -> 1.1.0 through the proxy: {summary.to_dict()}")
    assert summary.failed == 0, summary.to_dict()
    assert summary.by_version["1.0.0"] > 0 and summary.by_version["1.1.0"] > 0
    for weight in (10, 50):
        assert f"{weight}%" in result.output, result.output
    model = ws.model()
    assert model["stable"] == "1.1.0" and model["weights"] == {"1.1.0": 100}
    assert ("deployments", "models", "fraud-scorer-v1-0-0") not in server.store
    assert list(kubelet.workloads) == ["fraud-scorer-v1-1-0"]
    text = ws.mlops("status").stdout
    assert "pods 1.1.0: 1/1 ready (replicas owned by mlops)" in text, text
    assert "No changes" in ws.mlops("plan", "specs/").output


def test_an_erroring_image_is_rolled_back_automatically(
    ws: ClusterWorkspace, cluster: tuple[ApiServer, Kubelet, Prometheus]
) -> None:
    kubelet = cluster[1]
    if ws.model().get("stable") != "1.1.0":
        pytest.skip("needs the promoted 1.1.0 of the test before")
    ws.spec(
        "1.2.0",
        artifact="erroring.onnx",
        accuracy_of="1.1.0",
        steps=[(25, 6.0), (100, 0.0)],
        gates="[{metric: error_rate, max: 0.05}]",
        min_requests=5,
    )
    # Every 7th request is poisoned: 7 is coprime to the gateway's 4-request round-robin
    # cycle at 25%, so the canary's share sees poisoned rows (every 10th could miss it).
    with Load(ws, rate=60.0, duration=400.0, poison_every=7) as load:
        load.wait_answers(30)
        result = ws.mlops("apply", "--auto-approve", "specs/", expect=3)
    assert "gate failed at 25%: error_rate" in result.output, result.output
    model = ws.model()
    assert model["stable"] == "1.1.0" and model["weights"] == {"1.1.0": 100}
    assert list(kubelet.workloads) == ["fraud-scorer-v1-1-0"]
    summary = load.summary
    assert summary is not None
    print(f"\nrollback of the erroring 1.2.0: {summary.to_dict()}")
    assert set(summary.by_code) <= {"200", "500"}
    assert summary.by_version.get("1.1.0", 0) > 0
