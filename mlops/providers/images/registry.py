"""A small client of the OCI distribution API: manifests, digests and image configs.

Used to look images up by tag (is this artifact already built?) and to read back the digest
the registry stores after a push. Credentials come from the environment
(MLOPS_REGISTRY_USERNAME / MLOPS_REGISTRY_PASSWORD) or the standard Docker config
(DOCKER_CONFIG or ~/.docker/config.json, credential helpers included); they are sent to the
registry and never written into messages.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from dataclasses import dataclass
from typing import Any

import docker.auth
import docker.errors
import httpx

from mlops.providers.images import errors as image_errors

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MAX_MANIFEST_BYTES = 4 << 20
MAX_CONFIG_BYTES = 16 << 20
TIMEOUT_S = 30.0
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Manifest:
    digest: str  # sha256:... as the registry computes it (Docker-Content-Digest)
    media_type: str
    document: dict[str, Any]

    @property
    def layers(self) -> list[str]:
        return [str(layer["digest"]) for layer in self.document.get("layers", [])]


def split(reference: str) -> tuple[str, str]:
    """`host[:port]/path` -> (registry host, repository path). The host is required."""
    host, _, path = reference.partition("/")
    if not path or not ("." in host or ":" in host or host == "localhost"):
        raise image_errors.ImageConfigError(
            f"image repository {reference!r} must start with a registry host (host[:port]/name)"
        )
    return host, path


def credentials(registry: str) -> dict[str, str] | None:
    """Username and password for `registry`, or None (anonymous)."""
    user = os.environ.get("MLOPS_REGISTRY_USERNAME")
    password = os.environ.get("MLOPS_REGISTRY_PASSWORD")
    if user and password:
        return {"username": user, "password": password}
    try:
        found = docker.auth.load_config().resolve_authconfig(registry)
    except (docker.errors.DockerException, OSError, ValueError):
        return None
    found = {str(key).lower(): value for key, value in (found or {}).items()}
    if not found.get("username") or not found.get("password"):
        return None
    return {"username": str(found["username"]), "password": str(found["password"])}


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


class RegistryClient:
    """One registry. Loopback registries are spoken to over plain HTTP (as Docker does)."""

    def __init__(self, registry: str, *, timeout: float = TIMEOUT_S) -> None:
        self.registry = registry
        scheme = "http" if is_loopback(registry) else "https"
        self._base = f"{scheme}://{registry}"
        self._auth = credentials(registry)
        self._client = httpx.Client(timeout=timeout, follow_redirects=True)
        self._token: str | None = None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def manifest(self, repository: str, reference: str) -> Manifest | None:
        """The manifest of `repository:reference` (tag or digest), or None if there is none."""
        response = self._get(
            f"/v2/{repository}/manifests/{reference}", accept=", ".join(MANIFEST_TYPES)
        )
        if response.status_code == 404:
            return None
        self._check(response, f"manifest {repository}:{reference}")
        body = response.content
        if len(body) > MAX_MANIFEST_BYTES:
            raise image_errors.RegistryRefusedError(f"{self.registry}: manifest too large")
        computed = "sha256:" + hashlib.sha256(body).hexdigest()
        header = response.headers.get("Docker-Content-Digest", computed)
        if header != computed:
            raise image_errors.RegistryRefusedError(
                f"{self.registry}: manifest of {repository}:{reference} does not match its "
                f"Docker-Content-Digest ({header} != {computed})"
            )
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise image_errors.RegistryRefusedError(
                f"{self.registry}: manifest of {repository}:{reference} is not JSON"
            ) from exc
        media = str(document.get("mediaType") or response.headers.get("Content-Type", ""))
        return Manifest(computed, media, document)

    def config(self, repository: str, manifest: Manifest) -> dict[str, Any]:
        """The image config (labels, user, healthcheck ...) a single-image manifest points at."""
        digest = str(manifest.document.get("config", {}).get("digest", ""))
        if not digest.startswith("sha256:"):
            raise image_errors.RegistryRefusedError(
                f"{self.registry}: {repository}@{manifest.digest} is not a single image"
            )
        response = self._get(f"/v2/{repository}/blobs/{digest}")
        self._check(response, f"config of {repository}@{manifest.digest}")
        body = response.content[: MAX_CONFIG_BYTES + 1]
        if len(body) > MAX_CONFIG_BYTES or "sha256:" + hashlib.sha256(body).hexdigest() != digest:
            raise image_errors.RegistryRefusedError(
                f"{self.registry}: config blob {digest} does not match its digest"
            )
        document: dict[str, Any] = json.loads(body)
        return document

    # -- HTTP --------------------------------------------------------------------------------

    def _get(self, path: str, accept: str | None = None) -> httpx.Response:
        try:
            response = self._send(path, accept)
            if response.status_code == 401 and self._authenticate(response):
                response = self._send(path, accept)
        except httpx.HTTPError as exc:
            raise image_errors.RegistryUnavailableError(
                f"registry {self.registry} is unreachable: {type(exc).__name__}: {exc}"
            ) from exc
        return response

    def _send(self, path: str, accept: str | None) -> httpx.Response:
        headers = {"Accept": accept} if accept else {}
        auth = None
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        elif self._auth:
            auth = httpx.BasicAuth(self._auth["username"], self._auth["password"])
        return self._client.get(self._base + path, headers=headers, auth=auth)

    def _authenticate(self, response: httpx.Response) -> bool:
        """Token auth (RFC 6750 challenge, as Docker Hub, GHCR and most registries use)."""
        challenge = response.headers.get("WWW-Authenticate", "")
        if not challenge.lower().startswith("bearer ") or self._token:
            return False
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", "")
        if not realm.startswith(("https://", "http://")):
            return False
        auth = (self._auth["username"], self._auth["password"]) if self._auth else None
        answer = self._client.get(realm, params=params, auth=auth)
        if answer.status_code != 200:
            return False
        doc = answer.json()
        token = doc.get("token") or doc.get("access_token")
        self._token = str(token) if token else None
        return self._token is not None

    def _check(self, response: httpx.Response, what: str) -> None:
        if response.status_code < 300:
            return
        detail = response.text.strip().replace("\n", " ")[:300]
        message = f"registry {self.registry} answered {response.status_code} for {what}: {detail}"
        if response.status_code in (401, 403):
            raise image_errors.RegistryRefusedError(message + " (check the registry credentials)")
        if response.status_code >= 500 or response.status_code == 429:
            raise image_errors.RegistryUnavailableError(message)
        raise image_errors.RegistryRefusedError(message)
