"""Run a built image on loopback (host network, the engine on kernel-chosen ports) until it is
ready, for the conformance test; always removed afterwards."""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import docker.types
import httpx

from mlops.providers.images import context, services
from mlops.providers.images import errors as image_errors

READY_TIMEOUT_S = 120.0
LOG_LINES = 30


@dataclass(frozen=True)
class Running:
    url: str  # http://127.0.0.1:PORT, the inference port
    container_id: str


def ulimits() -> list[docker.types.Ulimit]:
    return [
        docker.types.Ulimit(name=name, soft=soft, hard=hard)
        for name, soft, hard in services.ULIMITS
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(container: Any, lines: int = LOG_LINES) -> str:
    try:
        raw: bytes = container.logs(tail=lines)
    except docker.errors.APIError:
        return "(no log)"
    return raw.decode(errors="replace").strip() or "(empty log)"


@contextmanager
def running(
    client: docker.DockerClient, image: str, *, timeout: float = READY_TIMEOUT_S
) -> Iterator[Running]:
    """Start `image` with the engine on 127.0.0.1 and yield once /v2/health/ready answers 200.
    A container that exits or stays unready past `timeout` raises ImageRunError with its log."""
    port, admin = free_port(), free_port()
    command = [
        "--repository", context.MODELS_DIR, "--host", "127.0.0.1", "--port", str(port),
        "--admin-port", str(admin), "--load-all", "--state-dir", "/tmp/mlops-engine",
    ]  # fmt: skip
    try:
        container = client.containers.run(
            image,
            command=command,
            detach=True,
            name=f"mlops-check-{secrets.token_hex(4)}",
            network_mode="host",
            ulimits=ulimits(),
            # Readiness is polled below; the image's HEALTHCHECK needs a timer service.
            healthcheck={"test": ["NONE"]},
            labels={"io.mlops.role": "image-check"},
        )
    except docker.errors.DockerException as exc:
        raise image_errors.ImageRunError(f"could not start {image}: {exc}") from exc
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(container, url, timeout)
        yield Running(url, str(container.id))
    finally:
        with suppress(docker.errors.APIError):
            container.remove(force=True)


def _wait_ready(container: Any, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            try:
                if http.get(f"{url}/v2/health/ready").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            container.reload()
            if container.status in ("exited", "dead", "stopped"):
                code = container.attrs.get("State", {}).get("ExitCode")
                raise image_errors.ImageRunError(
                    f"the image's engine exited (code {code}) before it was ready:\n"
                    f"{log_tail(container)}"
                )
            time.sleep(0.2)
    raise image_errors.ImageRunError(
        f"the image's engine was not ready within {timeout:.0f}s:\n{log_tail(container)}"
    )
