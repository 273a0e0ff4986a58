"""Fast checks of the image configuration and of what the engine image installs."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from mlops.providers.images import ImagesConfig, registry, wheels
from mlops.providers.images import errors as image_errors

DIGEST = "sha256:" + "a" * 64
# uvicorn imports these only when they are installed (auto-reload); the engine never reloads.
OPTIONAL = {"anyio", "watchfiles"}


@pytest.mark.parametrize(
    "base",
    ["python:3.12-slim", "python:3.12-slim@sha256:abc", f"Python@{DIGEST}", f"python@{DIGEST} "],
)
def test_a_base_must_be_pinned_by_digest(base: str) -> None:
    with pytest.raises(image_errors.ImageConfigError, match="pinned by digest"):
        ImagesConfig(base=base, repository="registry.example.com/team")


@pytest.mark.parametrize("repository", ["team/models", "Registry.example.com/x", "host:1/"])
def test_a_repository_needs_a_registry_host(repository: str) -> None:
    with pytest.raises(image_errors.ImageConfigError, match=r"images\.repository"):
        ImagesConfig(base=f"python:3.12-slim@{DIGEST}", repository=repository)


def test_a_pinned_base_and_repository_are_accepted() -> None:
    config = ImagesConfig(base=f"python:3.12-slim@{DIGEST}", repository="127.0.0.1:5000/ml")
    assert config.registry == "127.0.0.1:5000"
    assert config.image("fraud-scorer") == "127.0.0.1:5000/ml/fraud-scorer"


def test_the_engine_distributions_cover_what_the_engine_imports() -> None:
    """The image installs ENGINE_DISTRIBUTIONS only: every third-party distribution that the
    engine's entry point and serving modules import must be among them."""
    script = (
        "import json, sys, importlib.metadata as m\n"
        "before = set(sys.modules)\n"
        "import mlops.commands.serve, mlops.serving.worker, mlops.serving.supervisor\n"
        "import mlops.serving.session, uvloop, httptools\n"
        "owners = m.packages_distributions()\n"
        "print(json.dumps(sorted({d for name in list(sys.modules) "
        "if name not in before for d in owners.get(name.split('.')[0], [])})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    imported = {metadata.distribution(d).metadata["Name"].lower().replace("_", "-")
                for d in json.loads(done.stdout)}  # fmt: skip
    allowed = {d.lower() for d in wheels.ENGINE_DISTRIBUTIONS} | {"mlops"} | OPTIONAL
    assert imported - allowed == set()


def test_registry_credentials_come_from_the_environment_or_the_docker_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLOPS_REGISTRY_USERNAME", raising=False)
    monkeypatch.delenv("MLOPS_REGISTRY_PASSWORD", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert registry.credentials("registry.example.com") is None
    token = base64.b64encode(b"robot:from-config").decode()
    (tmp_path / "config.json").write_text(
        json.dumps({"auths": {"registry.example.com": {"auth": token}}})
    )
    assert registry.credentials("registry.example.com") == {
        "username": "robot",
        "password": "from-config",
    }
    assert registry.credentials("other.example.com") is None
    monkeypatch.setenv("MLOPS_REGISTRY_USERNAME", "ci")
    monkeypatch.setenv("MLOPS_REGISTRY_PASSWORD", "from-env")
    assert registry.credentials("registry.example.com") == {
        "username": "ci",
        "password": "from-env",
    }
