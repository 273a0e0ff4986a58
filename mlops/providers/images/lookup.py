"""`RegistryImages`: what the OCI registry holds of the specs' versions, for the refresh before
a plan (mlops.providers.base.Images). Reads only the registry's HTTP API (no Docker Engine):
one connection, one manifest and one config read per version looked up."""

from __future__ import annotations

import re
from collections.abc import Sequence

from mlops.providers import base as provider_base
from mlops.providers.images import builder
from mlops.providers.images import config as images_config
from mlops.providers.images import registry as oci
from mlops.state import models as state

MAX_QUERIES = 1_000  # versions in one lookup (one per spec)
_SHA256 = re.compile(r"[0-9a-f]{64}")  # a label anyone could set: anything else is no match


class RegistryImages:
    """The registry of `images.repository`; an image is REPOSITORY/MODEL:sha256-<sha256>."""

    def __init__(self, config: images_config.ImagesConfig) -> None:
        self.config = config

    @property
    def base(self) -> str:
        return self.config.base

    @property
    def repository(self) -> str:
        return self.config.repository

    def lookup(self, queries: Sequence[provider_base.ImageQuery]) -> dict[str, state.ImageState]:
        if len(queries) > MAX_QUERIES:
            raise ValueError(f"at most {MAX_QUERIES} image look-ups at once")
        found: dict[str, state.ImageState] = {}
        wanted = [q for q in queries if q.sha256 is not None]
        client = oci.RegistryClient(self.config.registry) if wanted else None
        try:
            for query in queries:
                repository = self.config.image(query.model)
                image = state.ImageState(
                    semver=query.semver, sha256=query.sha256, repository=repository
                )
                if client is not None and query.sha256 is not None:
                    image = _read(client, image, query.sha256)
                found[query.model] = image
        finally:
            if client is not None:
                client.close()
        return found


def _read(client: oci.RegistryClient, image: state.ImageState, sha256: str) -> state.ImageState:
    """The image found by its content tag, if its labels carry these bytes."""
    path = oci.split(image.repository)[1]
    manifest = client.manifest(path, builder.content_tag(sha256))
    if manifest is None:
        return image
    labels = client.config(path, manifest).get("config", {}).get("Labels") or {}
    if labels.get(builder.LABEL_SHA256) != sha256:
        return image
    settings = labels.get(builder.LABEL_SETTINGS)
    valid = isinstance(settings, str) and _SHA256.fullmatch(settings) is not None
    return image.model_copy(
        update={"digest": manifest.digest, "settings_sha256": settings if valid else None}
    )
