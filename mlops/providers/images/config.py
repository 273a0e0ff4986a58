"""`images:` of mlops.yaml: the base image, pinned by digest, and the repository to push to."""

from __future__ import annotations

from dataclasses import dataclass

from mlops.providers.images import errors as image_errors
from mlops.providers.images import registry
from mlops.spec import models as spec

_BASE = spec.IMAGE_BASE
_REPOSITORY = spec.IMAGE_REPOSITORY


@dataclass(frozen=True)
class ImagesConfig:
    base: str  # e.g. python:3.12-slim@sha256:...
    repository: str  # e.g. registry.example.com/team/models; images are REPOSITORY/MODEL

    def __post_init__(self) -> None:
        problems = []
        if not _BASE.match(self.base):
            problems.append(
                f"images.base {self.base!r} must be pinned by digest (NAME[:TAG]@sha256:<64 hex>)"
            )
        host = self.repository.split("/", 1)[0]
        has_host = "." in host or ":" in host or host == "localhost"
        if not _REPOSITORY.match(self.repository) or len(self.repository) > 200 or not has_host:
            problems.append(
                f"images.repository {self.repository!r} must be HOST[:PORT]/PATH in lower case"
            )
        if problems:
            raise image_errors.ImageConfigError("; ".join(problems))

    @property
    def registry(self) -> str:
        return registry.split(self.repository)[0]

    def image(self, model: str) -> str:
        """host/path/MODEL: the repository of one model's images."""
        return f"{self.repository}/{model}"
