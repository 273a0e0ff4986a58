"""Paths a user gives, kept inside a root (the workspace). Here, below both the spec loader
and `mlops.workspace`, because both resolve paths and the workspace reads its config through
the spec loader."""

from __future__ import annotations

import os
from pathlib import Path

from mlops import errors


def resolve_inside(path: Path, root: Path, *, what: str = "path") -> Path:
    """Resolve `path` and refuse it when it (or a symlink on the way) leaves `root`."""
    if "\x00" in str(path):
        raise errors.UsageError(f"{what} contains a NUL byte")
    root_real = Path(os.path.realpath(root))
    real = Path(os.path.realpath(path if path.is_absolute() else root / path))
    if real != root_real and root_real not in real.parents:
        raise errors.UsageError(f"{what} {str(path)!r} is outside the workspace {root_real}")
    return real
