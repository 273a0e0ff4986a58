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
from mlops.providers.images.hooks import Hooks, TerminalHooks


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
    "TerminalHooks",
    "default_cache_dir",
]
