"""`.mlops/served.json`: the serving config (hardware, replicas range, autoscaling) apply last
applied per model, from the plan's capacity. Plan reads it to diff a change of
`serving.hardware` or `serving.autoscaling` and to show capacity before the change; neither
the registry nor the local engine records them.

Format (version 1): {"format_version": 1, "models": {NAME: <spec serving: hardware,
replicas, autoscaling>}}. Bounded; a corrupt file is a one-line error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pydantic

from mlops import errors, fsio
from mlops.plan import types as plan_types
from mlops.spec import models as spec

FILE_NAME = "served.json"
FORMAT_VERSION = 1
MAX_BYTES = 16 * 1024 * 1024


def path_in(state_dir: Path) -> Path:
    return state_dir / FILE_NAME


def read(state_dir: Path) -> dict[str, spec.Serving]:
    path = path_in(state_dir)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise errors.ConfigError(f"{path}: too large; delete it (plan then assumes the specs)")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise errors.ConfigError(
            f"{path}: corrupt; delete it (plan then assumes the specs)"
        ) from None
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        raise errors.ConfigError(f"{path}: unsupported format; expected format_version 1")
    models = data.get("models")
    if not isinstance(models, dict):
        raise errors.ConfigError(f"{path}: 'models' must be an object")
    try:
        return {str(k): spec.Serving.model_validate(v) for k, v in models.items()}
    except pydantic.ValidationError as exc:
        raise errors.ConfigError(f"{path}: invalid record: {exc.errors()[0]['msg']}") from None


def record(state_dir: Path, plan: plan_types.Plan, applied: Mapping[str, bool]) -> None:
    """Keep the serving config of each model the run applied (`applied[name]`), drop the
    deleted ones; others keep their record."""
    records = read(state_dir)
    changed = False
    for name, done in applied.items():
        model = plan.capacity.models.get(name)
        if not done or model is None:
            continue
        if model.hardware_after is None:
            changed = records.pop(name, None) is not None or changed
            continue
        records[name] = spec.Serving(
            hardware=model.hardware_after,
            replicas=model.replicas_range or spec.Replicas(),
            autoscaling=model.autoscaling,
        )
        changed = True
    if changed:
        payload = {
            "format_version": FORMAT_VERSION,
            "models": {n: records[n].model_dump(mode="json") for n in sorted(records)},
        }
        fsio.atomic_write(path_in(state_dir), json.dumps(payload, indent=2) + "\n")
