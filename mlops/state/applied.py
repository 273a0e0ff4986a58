"""`.mlops/applied.json`: what mlops itself last set for each model.

Written by apply after each model's change; read by plan to report changes made outside
mlops and to know which models mlops manages (a managed model without a spec is a delete).

Format (version 1):
    {"format_version": 1,
     "models": {NAME: {"loaded": [SEMVER, ...],
                       "weights": {SEMVER: INT},
                       "aliases": {ALIAS: SEMVER}}}}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pydantic

from mlops import errors, fsio
from mlops.state import models as state

FILE_NAME = "applied.json"
FORMAT_VERSION = 1


def path_in(state_dir: Path) -> Path:
    return state_dir / FILE_NAME


def read(path: Path) -> dict[str, state.AppliedRecord]:
    """Records by model name; an absent file means mlops has applied nothing yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise errors.ConfigError(f"{path}: corrupt ({exc.msg}); restore or delete it") from None
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        raise errors.ConfigError(f"{path}: unsupported format; expected format_version 1")
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise errors.ConfigError(f"{path}: 'models' must be an object")
    try:
        return {name: state.AppliedRecord.model_validate(rec) for name, rec in models.items()}
    except pydantic.ValidationError as exc:
        raise errors.ConfigError(f"{path}: invalid record: {exc.errors()[0]['msg']}") from None


def write(path: Path, records: Mapping[str, state.AppliedRecord]) -> None:
    """Replace the file atomically (write, fsync, rename) so a crash never leaves half of it."""
    payload = {
        "format_version": FORMAT_VERSION,
        "models": {name: records[name].model_dump(mode="json") for name in sorted(records)},
    }
    fsio.atomic_write(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def update(path: Path, name: str, record: state.AppliedRecord | None) -> None:
    """Set (or with None, drop) one model's record, keeping the others."""
    records = read(path)
    if record is None:
        records.pop(name, None)
    else:
        records[name] = record
    write(path, records)
