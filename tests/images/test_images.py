"""End to end against real podman and docker-registry: build the example model's image, run
it, test it through the V2 protocol, push it, read the digest back; and every failure path
pushes nothing."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from mlops import errors
from mlops.providers import images
from mlops.providers.images import builder as images_builder
from mlops.providers.images import errors as image_errors
from mlops.providers.images import offline_base, registry, services
from tests.images.conftest import NAME, Example, Recorder, accuracy_check

# The first test's set-up may install the Debian packages and debootstrap the base.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def make_builder(
    client: docker.DockerClient, cache: Path, base: str, repository: str, **kwargs: Any
) -> tuple[images.ImageBuilder, Recorder]:
    hooks = Recorder()
    config = images.ImagesConfig(base=base, repository=repository)
    return images.ImageBuilder(client, config, cache, hooks=hooks, **kwargs), hooks


def ensure(
    builder: images.ImageBuilder, example: Example, semver: str, seen: list[Any] | None = None
) -> images.ImageRef:
    version = example.versions[semver]
    baseline = example.versions["1.0.0"].baseline
    return builder.ensure(
        NAME,
        semver,
        version.artifact,
        version.settings,
        version.sha256,
        conformance=accuracy_check(example, semver, baseline, [] if seen is None else seen),
        source_commit="0123456789abcdef0123456789abcdef01234567",
    )


def read_manifest(registry_address: str, repository: str, tag: str) -> httpx.Response:
    """What any client of the registry sees, independently of the code under test."""
    path = repository.split("/", 1)[1]
    return httpx.get(
        f"http://{registry_address}/v2/{path}/manifests/{tag}",
        headers={"Accept": ", ".join(registry.MANIFEST_TYPES)},
    )


@pytest.fixture(scope="module")
def first(
    client: docker.DockerClient,
    cache: Path,
    base: str,
    stack: services.Services,
    example: Example,
) -> tuple[images.ImageRef, Recorder, list[Any]]:
    builder, hooks = make_builder(client, cache, base, f"{stack.registry}/mlops")
    seen: list[Any] = []
    return ensure(builder, example, "1.0.0", seen), hooks, seen


def test_image_is_built_tested_pushed_and_digest_read_back(
    first: tuple[images.ImageRef, Recorder, list[Any]],
    client: docker.DockerClient,
    stack: services.Services,
    example: Example,
) -> None:
    ref, hooks, seen = first
    assert hooks.steps[:2] == ["find", "base"]
    assert hooks.steps[-4:] == ["build", "run", "conformance", "push"]
    # The conformance check ran against the container and the model answered correctly.
    assert len(seen) == 1 and seen[0]["passed"]
    assert seen[0]["accuracy"] >= example.versions["1.0.0"].baseline - 0.005
    # The build streamed its own lines (not a silent wait).
    assert any(step == "build" and "COPY model/" in text for step, text in hooks.lines)

    repository = f"{stack.registry}/mlops/{NAME}"
    assert ref.repository == repository
    for tag in ("1.0.0", f"sha256-{example.versions['1.0.0'].sha256}"):
        answer = read_manifest(stack.registry, repository, tag)
        assert answer.status_code == 200
        assert answer.headers["Docker-Content-Digest"] == ref.digest
        assert "sha256:" + hashlib.sha256(answer.content).hexdigest() == ref.digest


def test_image_is_lean_non_root_labelled_with_a_healthcheck(
    first: tuple[images.ImageRef, Recorder, list[Any]],
    client: docker.DockerClient,
    example: Example,
) -> None:
    ref = first[0]
    # The config as shipped: read from the registry, by the digest.
    host, path = registry.split(ref.repository)
    with registry.RegistryClient(host) as reader:
        manifest = reader.manifest(path, ref.digest)
        assert manifest is not None
        config = reader.config(path, manifest)["config"]
    labels = config["Labels"]
    version = example.versions["1.0.0"]
    assert labels["org.opencontainers.image.version"] == "1.0.0"
    assert labels["org.opencontainers.image.title"] == NAME
    assert labels["org.opencontainers.image.revision"] == "0123456789abcdef0123456789abcdef01234567"
    assert labels[images_builder.LABEL_SHA256] == version.sha256
    assert labels[images_builder.LABEL_MLOPS]
    assert labels["org.opencontainers.image.base.digest"].startswith("sha256:")
    assert config["User"] == "10001:10001"
    assert "/v2/health/ready" in " ".join(config["Healthcheck"]["Test"])
    assert config["Entrypoint"][:4] == ["python3", "-m", "mlops", "serve"]
    # No pip, no compiler, no controller packages; the model and settings are baked in.
    probe = (
        "import importlib.util as u, shutil, os; "
        "print([m for m in ('pip', 'mlflow', 'sklearn', 'pytest', 'kubernetes') if u.find_spec(m)],"
        " [t for t in ('gcc', 'cc', 'pip', 'pip3') if shutil.which(t)],"
        " sorted(os.listdir('/models/fraud-scorer/1.0.0')), os.getuid())"
    )
    out = client.containers.run(
        ref.reference, entrypoint=["python3", "-c", probe], command=[], remove=True,
        network_mode="host", ulimits=images.container.ulimits(),
    )  # fmt: skip
    assert out.decode().strip() == "[] [] ['model.onnx', 'settings.json'] 10001"


def test_same_bytes_are_found_without_a_build(
    first: tuple[images.ImageRef, Recorder, list[Any]],
    client: docker.DockerClient,
    cache: Path,
    base: str,
    stack: services.Services,
    example: Example,
) -> None:
    builder, hooks = make_builder(client, cache, base, f"{stack.registry}/mlops")
    assert ensure(builder, example, "1.0.0") == first[0]
    assert hooks.steps == ["find"]
    version = example.versions["1.0.0"]
    assert builder.find(NAME, version.sha256) == first[0]
    # Other settings baked in: another image.
    assert (
        builder.find(NAME, version.sha256, {**version.settings, "warmup": {"requests": 3}}) is None
    )
    assert builder.find(NAME, example.versions["1.1.0"].sha256) is None


def test_a_new_version_reuses_every_engine_layer(
    first: tuple[images.ImageRef, Recorder, list[Any]],
    client: docker.DockerClient,
    cache: Path,
    base: str,
    stack: services.Services,
    example: Example,
) -> None:
    builder, hooks = make_builder(client, cache, base, f"{stack.registry}/mlops")
    second = ensure(builder, example, "1.1.0")
    assert "engine" not in hooks.steps  # the engine image was not rebuilt
    assert ("build", "1 new layer(s) on top of the engine image") in hooks.lines
    repository = f"{stack.registry}/mlops/{NAME}"
    old = read_manifest(stack.registry, repository, "1.0.0").json()["layers"]
    new = read_manifest(stack.registry, repository, "1.1.0").json()["layers"]
    assert (
        read_manifest(stack.registry, repository, "1.1.0").headers["Docker-Content-Digest"]
        == second.digest
    )
    assert len(new) == len(old) >= 3
    assert [layer["digest"] for layer in new[:-1]] == [layer["digest"] for layer in old[:-1]]
    assert new[-1]["digest"] != old[-1]["digest"]


def test_a_broken_model_fails_conformance_and_nothing_is_pushed(
    first: tuple[images.ImageRef, Recorder, list[Any]],
    client: docker.DockerClient,
    cache: Path,
    base: str,
    stack: services.Services,
    example: Example,
) -> None:
    builder, hooks = make_builder(client, cache, base, f"{stack.registry}/mlops")
    with pytest.raises(image_errors.ImageConformanceError, match=r"accuracy .* is below"):
        ensure(builder, example, "1.2.0")
    assert "push" not in hooks.steps
    repository = f"{stack.registry}/mlops/{NAME}"
    for tag in ("1.2.0", f"sha256-{example.versions['1.2.0'].sha256}"):
        assert read_manifest(stack.registry, repository, tag).status_code == 404
    # The failed image is not kept locally either.
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(f"{repository}:1.2.0")


def test_an_image_that_never_gets_ready_is_an_error_with_its_log(
    first: tuple[images.ImageRef, Recorder, list[Any]],
    client: docker.DockerClient,
    cache: Path,
    base: str,
    stack: services.Services,
    tmp_path: Path,
) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"these bytes are not an ONNX model")
    builder, hooks = make_builder(
        client, cache, base, f"{stack.registry}/mlops", ready_timeout=20.0
    )
    tensor = {"dtype": "FP32", "shape": [-1, 2]}
    settings = {
        "signature": {"inputs": [{"name": "x", **tensor}], "outputs": [{"name": "y", **tensor}]}
    }
    sha = hashlib.sha256(bad.read_bytes()).hexdigest()

    def never(url: str) -> dict[str, Any]:
        raise AssertionError("conformance must not run")

    with pytest.raises(image_errors.ImageRunError, match="not ready within 20s") as caught:
        builder.ensure("garbage", "0.1.0", bad, settings, sha, conformance=never)
    assert "garbage" in str(caught.value).split("\n", 1)[1]  # the engine's log tail
    assert "push" not in hooks.steps
    assert (
        read_manifest(stack.registry, f"{stack.registry}/mlops/garbage", "0.1.0").status_code == 404
    )


def test_a_refusing_registry_is_one_error_and_keeps_nothing(
    first: tuple[images.ImageRef, Recorder, list[Any]],
    client: docker.DockerClient,
    cache: Path,
    base: str,
    stack: services.Services,
    example: Example,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLOPS_REGISTRY_USERNAME", "ci")
    monkeypatch.setenv("MLOPS_REGISTRY_PASSWORD", "s3cret-never-shown")
    readonly = stack.registries["readonly"]
    builder, hooks = make_builder(client, cache, base, f"{readonly}/mlops")
    with pytest.raises(image_errors.RegistryRefusedError) as caught:
        ensure(builder, example, "1.0.0")
    assert "405" in str(caught.value)  # the registry's refusal, as it said it
    shown = str(caught.value) + "".join(text for _, text in hooks.lines)
    assert "s3cret-never-shown" not in shown
    assert read_manifest(readonly, f"{readonly}/mlops/{NAME}", "1.0.0").status_code == 404


def test_an_unreachable_registry_fails_before_any_build(
    client: docker.DockerClient, cache: Path, base: str, example: Example
) -> None:
    closed = images.container.free_port()  # nothing listens there
    builder, hooks = make_builder(client, cache, base, f"127.0.0.1:{closed}/mlops")
    with pytest.raises(image_errors.RegistryUnavailableError, match="unreachable"):
        ensure(builder, example, "1.0.0")
    assert hooks.steps == ["find"]


def test_a_base_without_python_fails_the_build(
    client: docker.DockerClient,
    cache: Path,
    stack: services.Services,
    example: Example,
    tmp_path: Path,
) -> None:
    tarball = tmp_path / "debian-empty-x86_64.tar"
    with tarfile.open(tarball, "w") as tar:
        info = tarfile.TarInfo("etc/os-release")
        text = b"ID=empty\n"
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    empty = offline_base.publish(client, stack.registry, tarball)
    builder, hooks = make_builder(client, cache, empty, f"{stack.registry}/no-python")
    with pytest.raises(image_errors.ImageBuildError, match="cannot run python3"):
        ensure(builder, example, "1.0.0")
    assert "push" not in hooks.steps


def test_wrong_bytes_or_bad_names_are_refused_before_anything_runs(
    client: docker.DockerClient, cache: Path, base: str, stack: services.Services, example: Example
) -> None:
    builder, hooks = make_builder(client, cache, base, f"{stack.registry}/mlops")
    version = example.versions["1.0.0"]

    def never(url: str) -> dict[str, Any]:
        raise AssertionError("conformance must not run")

    cases = [
        (NAME, "1.0.0", "0" * 64, errors.ArtifactError),
        ("Not_A_Name", "1.0.0", version.sha256, errors.UsageError),
        (NAME, "one", version.sha256, errors.UsageError),
        (NAME, "1.0.0", "abc", errors.UsageError),
    ]
    for name, semver, sha, error in cases:
        with pytest.raises(error):
            builder.ensure(name, semver, version.artifact, version.settings, sha, conformance=never)
    assert hooks.steps == []
