"""Errors of the image pipeline, one per failing step; each says how to react (mlops.errors)."""

from __future__ import annotations

from mlops import errors


class ImageConfigError(errors.ConfigError):
    """`images:` in mlops.yaml is invalid (a base not pinned by digest, a bad repository)."""


class ImageBuildError(errors.PermanentError):
    """The image could not be built (the message ends with the build log's tail)."""


class ImageRunError(errors.PermanentError):
    """The built image did not start or did not become ready (with the container log's tail)."""


class ImageConformanceError(errors.PermanentError):
    """The running image failed its conformance test; nothing was pushed."""

    def __init__(self, message: str, result: dict[str, object]) -> None:
        super().__init__(message)
        self.result = result


class RegistryUnavailableError(errors.TransientError):
    """The OCI registry could not be reached or answered 5xx (worth a retry)."""


class RegistryRefusedError(errors.PermanentError):
    """The OCI registry refused a request (credentials, read-only, malformed answer)."""


class EngineApiUnavailableError(errors.TransientError):
    """The Docker Engine API (dockerd or `podman system service`) did not answer."""
