"""Plan files: JSON save/load with a format and schema version check, and the staleness check.

Saving is the one piece of I/O in plan/: it is a value written to a path the caller has
already confined to the workspace.
"""

from __future__ import annotations

import json
from pathlib import Path

import pydantic

from mlops import errors, fsio
from mlops.plan import types as t
from mlops.state import models as state

# A plan of 5,000 models is a few MB; anything far beyond is not a plan file.
MAX_BYTES = 256 * 1024 * 1024


def dumps(plan: t.Plan) -> str:
    return json.dumps(plan.model_dump(mode="json"), indent=2, sort_keys=False) + "\n"


def loads(text: str, *, source: str = "plan") -> t.Plan:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise errors.UsageError(f"{source}: not a plan file (invalid JSON: {exc.msg})") from None
    except RecursionError:  # found by tests/fuzz: "[" * 100000 went up as RecursionError
        raise errors.UsageError(f"{source}: not a plan file (nested too deeply)") from None
    if not isinstance(data, dict) or "format_version" not in data:
        raise errors.UsageError(f"{source}: not a plan file (no format_version)")
    version, schema = data["format_version"], data.get("schema_version")
    if version != t.PLAN_FORMAT_VERSION or schema != t.PLAN_SCHEMA:
        # Earlier formats are not read: a plan is made again in seconds, and reading an old
        # payload into today's models could run steps the reviewer never saw.
        named = f"schema {_short(schema)}" if version == t.PLAN_FORMAT_VERSION else "version"
        raise errors.UsageError(
            f"{source}: plan format {named} {_short(version)} is not supported "
            f"(this mlops reads {t.PLAN_SCHEMA}, format_version {t.PLAN_FORMAT_VERSION}); "
            "plan again"
        )
    try:
        return t.Plan.model_validate(data)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = _printable(".".join(str(part) for part in first["loc"]))[:200]
        message = _printable(first["msg"])[:300]
        raise errors.UsageError(f"{source}: invalid plan file: {where}: {message}") from None


def _printable(text: str) -> str:
    """One line: the file's keys and values may hold line breaks and control characters."""
    return "".join(c if c.isprintable() else "?" for c in text)


def _short(value: object) -> str:
    """A value from the file, for a one-line message: bounded, no line breaks."""
    try:
        text = json.dumps(value)
    except RecursionError:
        return "(nested too deeply)"
    return text if len(text) <= 40 else text[:39] + "…"


def save(plan: t.Plan, path: Path) -> None:
    """Write atomically: a reader never sees half a plan."""
    fsio.atomic_write(path, dumps(plan))


def load(path: Path) -> t.Plan:
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise errors.UsageError(f"{path}: {size} bytes is too large for a plan file")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise errors.UsageError(f"plan file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise errors.UsageError(f"plan file {str(path)!r} is a directory") from None
    except UnicodeDecodeError:
        raise errors.UsageError(f"{path}: not a plan file (not UTF-8 text)") from None
    return loads(text, source=str(path))


def check_fresh(plan: t.Plan, live: state.LiveState) -> None:
    """Refuse a plan made against different live state: apply must change nothing then."""
    current = live.fingerprint()
    if plan.state_fingerprint != current:
        raise errors.StalePlanError(
            "plan is stale: live state changed since it was made "
            f"(plan {plan.state_fingerprint[:19]}, now {current[:19]}); plan again"
        )
