"""Images through plan and apply (issue 11), against real components: podman's Engine API, the
loopback OCI registries, MLflow on sqlite and the local engine, driven through the CLI.

One workspace walks 1.0.0 (first deployment) -> 1.1.0 (a second version) -> the broken 1.2.0,
in this order; a second workspace pushes to the read-only registry, a third to a dead port."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlops import api
from mlops import workspace as ws_mod
from mlops.plan import types as t
from mlops.providers import factory
from mlops.providers.images import builder as images_builder
from mlops.providers.images import registry as oci
from mlops.providers.images import services
from tests import support
from tests.images.conftest import NAME, Example

pytestmark = pytest.mark.slow

SECRET = "s3cret-registry-password-1f9a"  # must never reach a plan, a journal or the output


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spec(version: str, baseline: float) -> str:
    return f"""apiVersion: mlops/v1
kind: ModelDeployment
metadata: {{name: {NAME}}}
spec:
  model:
    version: {version}
    artifact: ../models/{NAME}-{version}.onnx
    signature:
      inputs: [{{name: input, dtype: FP32, shape: [-1, 30]}}]
      outputs:
        - {{name: label, dtype: INT64, shape: [-1]}}
        - {{name: probabilities, dtype: FP32, shape: [-1, 2]}}
    baseline: {{metric: accuracy, value: {baseline}, p99_ms: 1000}}
    validation: {{data: ../data/{NAME}-val.npz, tolerance: 0.01}}
  rollout:
    strategy: immediate
    keep_previous: 0s
"""


@dataclass
class Workspace:
    root: Path
    repository: str  # images.repository
    example: Example

    def write(self, version: str) -> None:
        baseline = self.example.versions["1.0.0"].baseline  # every version judged by 1.0.0's
        (self.root / "specs" / f"{NAME}.yaml").write_text(spec(version, baseline))

    def plan(self) -> t.Plan:
        made = api.plan(str(self.root), [self.root / "specs"])
        assert not made.errors, made.errors
        return made

    def version(self, semver: str) -> tuple[str | None, str | None]:
        registry = factory.registry(ws_mod.open_workspace(self.root))
        found = registry.get_version(NAME, semver)
        assert found is not None
        return found.image_digest, found.image_reference

    def text_of_state(self) -> str:
        """Every plan file and journal the workspace holds, as text."""
        files = [*self.root.glob("*.json"), *(self.root / ".mlops" / "journal").glob("*")]
        return "\n".join(f.read_text(errors="replace") for f in files if f.is_file())

    def journal_failures(self) -> list[str]:
        failed = []
        for path in sorted((self.root / ".mlops" / "journal").glob("*.jsonl")):
            for line in path.read_text().splitlines():
                entry = json.loads(line)
                if entry.get("event") == "failed":
                    failed.append(str(entry.get("action")))
        return failed


def make_workspace(root: Path, example: Example, base: str, repository: str) -> Workspace:
    trained = example.validation.parent.parent
    shutil.copytree(trained / "models", root / "models")
    shutil.copytree(trained / "data", root / "data")
    (root / "specs").mkdir()
    (root / "mlops.yaml").write_text(
        f"target: local\nserve: {{port: {free_port()}}}\n"
        f"images: {{base: '{base}', repository: '{repository}'}}\n"
    )
    return Workspace(root, repository, example)


@pytest.fixture(scope="module")
def environment(stack: services.Services) -> Iterator[None]:
    """The Engine API of the test's podman, and registry credentials from the environment
    (the loopback registry accepts anyone; they must still never be written anywhere)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOCKER_HOST", stack.docker_url)
        patch.setenv("MLOPS_REGISTRY_USERNAME", "ci-bot")
        patch.setenv("MLOPS_REGISTRY_PASSWORD", SECRET)
        yield


@pytest.fixture(scope="module")
def walk(
    tmp_path_factory: pytest.TempPathFactory,
    example: Example,
    base: str,
    stack: services.Services,
    environment: None,
) -> Iterator[Workspace]:
    root = tmp_path_factory.mktemp("plan-apply")
    ws = make_workspace(root, example, base, f"{stack.registry}/team")
    try:
        yield ws
    finally:
        api.down(workspace=root)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> support.Runner:
    return support.cli_runner(capsys)


def kinds(plan: t.Plan) -> list[str]:
    return [a.kind.value for a in plan.actions]


def manifest(repository: str, reference: str) -> oci.Manifest | None:
    host, path = oci.split(f"{repository}/{NAME}")
    with oci.RegistryClient(host) as client:
        return client.manifest(path, reference)


def labels(repository: str, found: oci.Manifest) -> dict[str, str]:
    host, path = oci.split(f"{repository}/{NAME}")
    with oci.RegistryClient(host) as client:
        return dict(client.config(path, found).get("config", {}).get("Labels") or {})


def git_commit(root: Path) -> str:
    """Make the workspace a git repository with one commit; its id (the image's revision)."""
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "specs", "mlops.yaml"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "release"], check=True)
    done = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True)
    return done.stdout.strip()


def test_plan_shows_the_image_steps_and_apply_pushes_the_tested_image(
    walk: Workspace, cli: support.Runner
) -> None:
    walk.write("1.0.0")
    plan = walk.plan()
    order = kinds(plan)
    assert order[:5] == ["register", "verify", "build_image", "push_image", "conformance_test"]
    build = plan.actions[2].after
    assert isinstance(build, t.BuildImagePayload)
    assert build.repository == f"{walk.repository}/{NAME}" and build.sha256 is None
    shown = cli("-C", str(walk.root), "plan", "specs", "-o", "release.json")
    assert shown.code == 2 or shown.code == 0, shown.err
    assert "build_image" in shown.out and "push_image" in shown.out

    applied = cli("-C", str(walk.root), "apply", "release.json")
    assert applied.code == 0, applied.err
    assert "image build" in applied.err and "image conformance" in applied.err

    digest, reference = walk.version("1.0.0")
    sha256 = walk.example.versions["1.0.0"].sha256
    by_semver = manifest(walk.repository, "1.0.0")
    by_content = manifest(walk.repository, images_builder.content_tag(sha256))
    assert by_semver is not None and by_content is not None
    assert digest == by_semver.digest == by_content.digest
    assert reference == f"{walk.repository}/{NAME}@{digest}"

    shown = cli("-C", str(walk.root), "registry", "show", f"{NAME}@1.0.0")
    assert shown.code == 0 and str(digest) in shown.out
    status = cli("-C", str(walk.root), "status", NAME)
    assert status.code == 0
    assert f"image 1.0.0: {reference} (recorded (process runtime))" in status.out
    document = json.loads(cli("-C", str(walk.root), "status", "--format", "json").out)
    serving = document["models"][NAME]["serving_images"]
    assert serving == [
        {
            "semver": "1.0.0",
            "weight": 100,
            "image_digest": digest,
            "image": reference,
            "source": "recorded (process runtime)",
        }
    ]
    # The credentials came from the environment and were used, never written.
    assert SECRET not in walk.text_of_state()
    assert SECRET not in applied.out + applied.err


def test_a_replan_of_unchanged_bytes_has_no_image_steps(walk: Workspace) -> None:
    assert walk.plan().actions == []


def test_a_second_version_reuses_every_engine_layer(walk: Workspace, cli: support.Runner) -> None:
    walk.write("1.1.0")
    plan = walk.plan()
    assert {"build_image", "push_image"} <= set(kinds(plan))
    applied = cli("-C", str(walk.root), "apply", "--auto-approve", "specs")
    assert applied.code == 0, applied.err
    first, second = manifest(walk.repository, "1.0.0"), manifest(walk.repository, "1.1.0")
    assert first is not None and second is not None
    rebuilt = [layer for layer in second.layers if layer not in first.layers]
    assert len(rebuilt) == 1  # the model's layer; every engine layer is shared
    assert second.layers[:-1] == first.layers[:-1]
    digest, _ = walk.version("1.1.0")
    assert digest == second.digest


def test_a_broken_model_is_not_pushed_nor_recorded(walk: Workspace, cli: support.Runner) -> None:
    walk.write("1.2.0")
    broken = walk.example.versions["1.2.0"]
    assert "build_image" in kinds(walk.plan())
    assert cli("-C", str(walk.root), "plan", "specs", "-o", "broken.json").code in (0, 2)
    for attempt in range(2):  # the re-run resumes at the failed step and fails the same way
        applied = cli("-C", str(walk.root), "apply", "broken.json")
        assert applied.code == 1, applied.err
        assert ("Resuming run" in applied.err) is (attempt == 1)
        errors = [line for line in applied.err.splitlines() if line.startswith("Error")]
        assert len(errors) == 1, applied.err
        assert "build_image failed" in errors[0] and "failed conformance" in errors[0]
        assert "nothing was pushed" in errors[0]
        # Nothing was loaded or routed yet: there is nothing to roll back.
        assert "has not loaded or routed" in errors[0] and "mlops rollback" not in errors[0]
    assert manifest(walk.repository, "1.2.0") is None
    assert manifest(walk.repository, images_builder.content_tag(broken.sha256)) is None
    assert walk.version("1.2.0") == (None, None)
    failures = walk.journal_failures()
    assert failures and all(f.endswith("build_image") for f in failures)
    # 1.1.0 still serves.
    document = api.status(NAME, workspace=walk.root)
    assert document["models"][NAME]["weights"] == {"1.1.0": 100}


def test_a_refusing_registry_fails_the_push_with_one_line_and_records_nothing(
    tmp_path: Path,
    example: Example,
    base: str,
    stack: services.Services,
    environment: None,
    cli: support.Runner,
) -> None:
    ws = make_workspace(tmp_path / "ws", example, base, f"{stack.registries['readonly']}/team")
    try:
        ws.write("1.0.0")
        assert cli("-C", str(ws.root), "plan", "specs", "-o", "release.json").code in (0, 2)
        for attempt in range(2):  # the re-run resumes at push_image: nothing is built again
            applied = cli("-C", str(ws.root), "apply", "release.json")
            assert applied.code == 1, applied.err
            errors = [line for line in applied.err.splitlines() if line.startswith("Error")]
            assert len(errors) == 1 and "push_image failed" in errors[0], applied.err
            assert "has not loaded or routed" in errors[0] and "mlops rollback" not in errors[0]
            assert ("image build:" in applied.err) is (attempt == 0)
            assert ("Resuming run" in applied.err) is (attempt == 1)
        assert ws.version("1.0.0") == (None, None)
        assert manifest(ws.repository, "1.0.0") is None
        assert all(f.endswith("push_image") for f in ws.journal_failures())
        assert SECRET not in ws.text_of_state() + applied.err
    finally:
        api.down(workspace=ws.root)


def test_an_unreachable_registry_stops_the_plan_with_one_line(
    tmp_path: Path, example: Example, base: str, environment: None, cli: support.Runner
) -> None:
    ws = make_workspace(tmp_path / "ws", example, base, f"127.0.0.1:{free_port()}/team")
    ws.write("1.0.0")
    shown = cli("-C", str(ws.root), "plan", "specs")
    assert shown.code == 1
    errors = [line for line in shown.err.splitlines() if line.strip()]
    assert len(errors) == 1 and "127.0.0.1" in errors[0], shown.err


def test_images_added_after_a_deployment_build_the_stable_version_alone(
    tmp_path: Path,
    example: Example,
    base: str,
    stack: services.Services,
    environment: None,
    cli: support.Runner,
) -> None:
    ws = make_workspace(tmp_path / "ws", example, base, f"{stack.registry}/later")
    config = (ws.root / "mlops.yaml").read_text()
    (ws.root / "mlops.yaml").write_text(config.split("images:")[0])  # no images: yet
    try:
        ws.write("1.0.0")
        assert cli("-C", str(ws.root), "apply", "--auto-approve", "specs").code == 0
        assert ws.version("1.0.0") == (None, None)
        (ws.root / "mlops.yaml").write_text(config)
        commit = git_commit(ws.root)
        plan = ws.plan()
        assert kinds(plan) == ["build_image", "push_image"]
        assert plan.models[NAME].strategy == "image"
        applied = cli("-C", str(ws.root), "apply", "--auto-approve", "specs")
        assert applied.code == 0, applied.err
        digest, _ = ws.version("1.0.0")
        found = manifest(ws.repository, "1.0.0")
        assert found is not None and digest == found.digest
        assert labels(ws.repository, found)["org.opencontainers.image.revision"] == commit
        assert ws.plan().actions == []
    finally:
        api.down(workspace=ws.root)
