"""Lean model images: one per model version (engine + model + settings), built through the
Docker Engine API, tested running on loopback, pushed to an OCI registry, known by digest.

Public names: ImageBuilder, ImageRef, ImagesConfig, Hooks, TerminalHooks, default_cache_dir.
See docs/images.md.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlops.providers.images.builder import Conformance, ImageBuilder, ImageRef
from mlops.providers.images.config import ImagesConfig
from mlops.providers.images.engine_api import connect
from mlops.providers.images.hooks import Hooks, TerminalHooks
from mlops.providers.images.lookup import RegistryImages
from mlops.spec import models as spec


def registry_images(images: spec.WorkspaceImages | None) -> RegistryImages | None:
    """The OCI registry of mlops.yaml's `images:` for the refresh; None without `images:`."""
    if images is None:
        return None
    return RegistryImages(ImagesConfig(images.base, images.repository))


def default_cache_dir() -> Path:
    """Wheels, the mlops wheel, base probes and the offline base: $XDG_CACHE_HOME/mlops/images."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "mlops" / "images"


__all__ = [
    "Conformance",
    "Hooks",
    "ImageBuilder",
    "ImageRef",
    "ImagesConfig",
    "RegistryImages",
    "TerminalHooks",
    "connect",
    "default_cache_dir",
    "registry_images",
]
