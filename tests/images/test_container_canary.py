"""`serve.runtime: container` end to end through the `mlops` CLI: each version runs as its
built image (podman, loopback), behind the nginx gateway, and the same gated canary as the
process runtime moves traffic between two containers under steady load with zero failed
requests; an image whose model errors is rolled back automatically (exit 3).

Real components: the podman service and the loopback registry of tests/images/conftest.py,
the offline base image, MLflow on sqlite, Debian's nginx, the engine in the containers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import pytest

from mlops import loadgen
from mlops.providers.images import services
from tests.e2e.conftest import NAME, E2EWorkspace, Load, free_port
from tests.images.conftest import Example

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
ONE_REPLICA = "replicas: {min: 1, max: 1}"


class ContainerWorkspace(E2EWorkspace):
    docker_env: dict[str, str]
    images: str

    def config(self, metrics: str = "builtin") -> None:
        (self.root / "mlops.yaml").write_text(
            f"target: local\nmetrics: {metrics}\n"
            f"serve: {{host: 127.0.0.1, port: {self.port}, runtime: container}}\n"
            f"images: {self.images}\n"
        )

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.docker_env}

    def spec(self, version: str, **kwargs: Any) -> Path:
        path = super().spec(version, **kwargs)
        path.write_text(path.read_text().replace("replicas: {min: 2, max: 2}", ONE_REPLICA))
        return path

    def down(self) -> None:
        from mlops.providers.containers import runtime as container_runtime
        from mlops.workspace import open_workspace

        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        container_runtime.ContainerRuntime(open_workspace(self.root)).stop()


@pytest.fixture(scope="module")
def ws(
    stack: services.Services,
    base: str,
    example: Example,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch_module: pytest.MonkeyPatch,
) -> Iterator[ContainerWorkspace]:
    trained = example.versions["1.0.0"].artifact.parent.parent  # models/ and data/
    root = tmp_path_factory.mktemp("containers") / "ws"
    root.mkdir()
    shutil.copytree(trained / "models", root / "models")
    shutil.copytree(trained / "data", root / "data")
    # The erroring double of 1.1.0 (same answers, fails rows above 50) as version 1.2.0.
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "model_variants.py"), "erroring",
         str(root / "models" / f"{NAME}-1.1.0.onnx"), str(root / "models" / "erroring.onnx")],
        check=True, capture_output=True,
    )  # fmt: skip
    workspace = ContainerWorkspace(root=root, port=free_port(), models=trained)
    workspace.docker_env = {"DOCKER_HOST": stack.docker_url, **stack.env}
    workspace.images = f"{{base: '{base}', repository: {stack.registry}/canary}}"
    # The runtime's own calls in this process (down) reach the same podman service.
    monkeypatch_module.setenv("DOCKER_HOST", stack.docker_url)
    workspace.config()
    try:
        yield workspace
    finally:
        workspace.down()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def running(client: docker.DockerClient, ws: ContainerWorkspace) -> dict[str, str]:
    """semver -> image of this workspace's running serving containers."""
    found = client.containers.list(filters={"label": ["io.mlops.role=serve"]})
    return {
        c.labels["io.mlops.semver"]: c.labels["io.mlops.image"]
        for c in found
        if c.labels.get("io.mlops.model") == NAME
    }


def test_a_gated_canary_between_two_images_loses_no_request(
    ws: ContainerWorkspace, client: docker.DockerClient
) -> None:
    ws.spec("1.0.0")
    ws.mlops("apply", "--auto-approve", "specs/")
    first = ws.model()
    assert first["weights"] == {"1.0.0": 100}
    v1_image = running(client, ws)["1.0.0"]
    assert first["serving_images"][0]["image"] == v1_image

    ws.spec(
        "1.1.0",
        steps=[(5, 4.0), (25, 4.0), (100, 0.0)],
        gates="[{metric: error_rate, max: 0.02}]",
        min_requests=5,
    )
    plan = ws.mlops("plan", "specs/").output
    assert "build_image" in plan and "push_image" in plan, plan
    with Load(ws, rate=60.0, duration=300.0) as load:
        load.wait_answers(50)
        result = ws.mlops("apply", "--auto-approve", "specs/")
        load.wait_answers(50)
    summary = load.summary
    assert summary is not None
    assert summary.failed == 0, summary.to_dict()
    assert summary.by_version["1.0.0"] > 0 and summary.by_version["1.1.0"] > 0
    for weight in (5, 25):
        assert f"{weight}%" in result.output, result.output

    model = ws.model()
    assert model["stable"] == "1.1.0" and model["weights"] == {"1.1.0": 100}
    serving = model["serving_images"]
    images = running(client, ws)
    assert list(images) == ["1.1.0"] and images["1.1.0"] != v1_image
    assert [s["image"] for s in serving] == [images["1.1.0"]] and serving[0]["source"] == (
        "container"
    )
    text = ws.mlops("status").stdout
    assert images["1.1.0"].split("@")[1] in text, text  # the digest serving
    # What the gateway routes to is the recorded state; a re-plan is a no-op.
    assert "No changes" in ws.mlops("plan", "specs/").output


def test_an_erroring_image_is_rolled_back_automatically(
    ws: ContainerWorkspace, client: docker.DockerClient
) -> None:
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
    with Load(ws, rate=60.0, duration=300.0, poison_every=7) as load:
        load.wait_answers(30)
        result = ws.mlops("apply", "--auto-approve", "specs/", expect=3)
    assert "gate failed at 25%: error_rate" in result.output, result.output
    model = ws.model()
    assert model["stable"] == "1.1.0" and model["weights"] == {"1.1.0": 100}
    row = next(r for r in model["versions"] if r["semver"] == "1.2.0")
    assert row["status"] == "rejected"
    assert "1.2.0" not in running(client, ws)
    # Only poisoned requests that the gateway gave the erroring canary failed.
    summary = load.summary
    assert summary is not None and set(summary.by_code) <= {"200", "500"}
    assert summary.by_version.get("1.1.0", 0) > 0
    desired = json.loads((ws.root / ".mlops" / "containers" / "desired.json").read_text())
    assert sorted(desired["models"][NAME]["versions"]) == ["1.1.0"]


def test_a_version_whose_container_died_is_loaded_again_by_the_next_plan(
    ws: ContainerWorkspace, client: docker.DockerClient
) -> None:
    if ws.model().get("stable") != "1.1.0":
        pytest.skip("needs the promoted 1.1.0 of the tests before")
    ws.spec("1.1.0", gates="[{metric: error_rate, max: 0.02}]", min_requests=5)
    (dead,) = [
        c
        for c in client.containers.list(filters={"label": ["io.mlops.role=serve"]})
        if c.labels.get("io.mlops.semver") == "1.1.0"
    ]
    dead.kill()
    row = next(r for r in ws.model()["versions"] if r["semver"] == "1.1.0")
    assert row["loaded"] is None  # every container of it exited: not loaded
    plan = ws.mlops("plan", "specs/").output
    assert "load" in plan, plan
    ws.mlops("apply", "--auto-approve", "specs/")
    assert running(client, ws) == {"1.1.0": dead.labels["io.mlops.image"]}
    assert ws.model()["weights"] == {"1.1.0": 100}
    reply = httpx.post(
        f"{ws.url()}/v2/models/{NAME}/infer", content=loadgen.body(30, 1, False, 1), timeout=10
    )
    assert reply.status_code == 200 and reply.headers["x-mlops-version"] == "1.1.0"
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(dead.id)  # the exited container was replaced, not kept


def test_down_stops_the_containers_and_the_gateway(
    ws: ContainerWorkspace, client: docker.DockerClient
) -> None:
    url = ws.url()
    result = ws.mlops("down", "--format", "json")
    assert json.loads(result.output)["containers"] is True
    assert running(client, ws) == {}
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/_gateway/generation", timeout=5)
    again = ws.mlops("down").output
    assert "containers: not running" in again
