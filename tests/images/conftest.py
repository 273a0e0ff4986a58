"""Real components for the image tests: podman's Docker-compatible API, two loopback OCI
registries (one read-only), an offline Debian base pushed to the registry and pinned by
digest, and the example model trained in three versions (1.2.0 is the broken variant)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest

from mlops import datasets, errors
from mlops.conformance import checks
from mlops.providers import images
from mlops.providers.engine import client as engine_client
from mlops.providers.images import offline_base, services
from mlops.providers.mlflow import onnx_artifact

ROOT = Path(__file__).resolve().parents[2]
NAME = "fraud-scorer"
TOLERANCE = 0.005


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Services]:
    try:
        services.install()
    except errors.MlopsError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the image tests: {exc}")
        pytest.skip(f"podman cannot be installed here: {exc}")
    root = tmp_path_factory.mktemp("images")
    running = services.start(root, registries=("default", "readonly"), readonly=("readonly",))
    try:
        yield running
    finally:
        running.podman("rm", "--all", "--force")
        running.stop()
        running.podman("system", "reset", "--force")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def client(stack: services.Services) -> Iterator[docker.DockerClient]:
    api = docker.DockerClient(base_url=stack.docker_url, timeout=1800)
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def cache() -> Path:
    # Shared between runs (wheels, the mlops wheel, the debootstrap tarball), as for users.
    return images.default_cache_dir()


@pytest.fixture(scope="session")
def base(client: docker.DockerClient, stack: services.Services, cache: Path) -> str:
    return offline_base.publish(client, stack.registry, offline_base.rootfs(cache))


@dataclass(frozen=True)
class Version:
    semver: str
    artifact: Path
    sha256: str
    baseline: float
    settings: dict[str, Any]


@dataclass(frozen=True)
class Example:
    validation: Path
    versions: dict[str, Version] = field(default_factory=dict)


@pytest.fixture(scope="session")
def example(tmp_path_factory: pytest.TempPathFactory) -> Example:
    out = tmp_path_factory.mktemp("example")
    versions = {}
    for semver, variant in (("1.0.0", "good"), ("1.1.0", "good"), ("1.2.0", "broken")):
        subprocess.run(
            [sys.executable, str(ROOT / "examples" / "train.py"), "--version", semver,
             "--out", str(out), "--variant", variant],
            check=True, capture_output=True,
        )  # fmt: skip
        report = json.loads((out / "models" / f"{NAME}-{semver}.json").read_text())
        artifact = out / "models" / f"{NAME}-{semver}.onnx"
        signature = onnx_artifact.read_signature(artifact)
        versions[semver] = Version(
            semver,
            artifact,
            hashlib.sha256(artifact.read_bytes()).hexdigest(),
            float(report["value"]),
            {"signature": signature.model_dump(mode="json"), "warmup": {"requests": 2}},
        )
    # Every version is judged against the good model's baseline (as a spec pins it).
    return Example(out / "data" / f"{NAME}-val.npz", versions)


class Recorder(images.Hooks):
    """Steps and lines as they came, for the assertions."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.seconds: dict[str, float] = {}
        self.lines: list[tuple[str, str]] = []

    def started(self, step: str, detail: str) -> None:
        self.steps.append(step)

    def finished(self, step: str, seconds: float, detail: str) -> None:
        self.seconds[step] = seconds

    def line(self, step: str, text: str) -> None:
        self.lines.append((step, text))


def accuracy_check(
    example: Example, semver: str, baseline: float, seen: list[Mapping[str, Any]]
) -> images.Conformance:
    """The conformance accuracy check (mlops.conformance.checks) of one version, through the
    V2 protocol against the running container."""

    def check(url: str) -> Mapping[str, Any]:
        version = example.versions[semver]
        signature = version.settings["signature"]
        dtypes = {t["name"]: t["dtype"] for t in signature["inputs"]}
        first = signature["outputs"][0]["name"]
        inputs, labels = datasets.load_validation(example.validation, list(dtypes))
        client = engine_client.VersionClient(url, NAME, semver, dtypes, [first])
        try:
            score = checks.accuracy(client, inputs, labels, first)
        finally:
            client.close()
        passed = score >= baseline - TOLERANCE
        result = {
            "passed": passed,
            "accuracy": score,
            "reason": "" if passed else f"accuracy {score:.4f} is below {baseline:.4f}",
        }
        seen.append(result)
        return result

    return check
