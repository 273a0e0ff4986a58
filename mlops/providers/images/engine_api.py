"""The Docker Engine API client of apply: dockerd or `podman system service`, found the way the
docker CLI finds it (DOCKER_HOST, else the default socket)."""

from __future__ import annotations

import os

import docker
import docker.errors

from mlops.providers.images import builder
from mlops.providers.images import errors as image_errors

PING_TIMEOUT_S = 10.0


def connect() -> docker.DockerClient:
    """A client of the Engine API that answered a ping; EngineApiUnavailableError if none."""
    where = os.environ.get("DOCKER_HOST") or "the default socket"
    try:
        client = docker.from_env(timeout=builder.BUILD_TIMEOUT_S)
    except docker.errors.DockerException as exc:
        raise image_errors.EngineApiUnavailableError(
            f"no Docker Engine API at {where} (start dockerd or `podman system service`, "
            f"set DOCKER_HOST): {' '.join(str(exc).split())[:300]}"
        ) from exc
    try:
        client.api.timeout = PING_TIMEOUT_S
        client.ping()
    except docker.errors.DockerException as exc:
        client.close()
        raise image_errors.EngineApiUnavailableError(
            f"the Docker Engine API at {where} does not answer: {' '.join(str(exc).split())[:300]}"
        ) from exc
    except Exception:
        client.close()
        raise
    client.api.timeout = builder.BUILD_TIMEOUT_S
    return client
