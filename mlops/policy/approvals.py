"""Sign-off bound to a plan: approvals recorded beside the plan file, tied to its digest.

`PLANFILE.approvals.json` holds who approved which plan content. The digest is the sha256 of
the plan's canonical JSON (sorted keys, no whitespace): reformatting the file changes nothing,
any change of what it says gives another digest, so an approval never carries over to a
changed plan. It is the digest the apply journal records for the run (`plan_digest`).

The file is untrusted input (anyone can edit it): bounded in size and count, every field
validated, one-line errors. It records sign-off; it does not authenticate anyone: in CI the
workflow writes it from the pull request's reviews (examples/ci/).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Final, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from mlops import errors, fsio
from mlops.plan import types as plan_types

SUFFIX: Final = ".approvals.json"
FORMAT_VERSION: Final = 1
MAX_BYTES: Final = 256 * 1024
MAX_APPROVALS: Final = 200
MAX_COMMENT: Final = 500
NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$"
DIGEST_PATTERN: Final = r"^sha256:[0-9a-f]{64}$"

Name = Annotated[str, Field(pattern=NAME_PATTERN, description="who approved (a login)")]
Digest = Annotated[str, Field(pattern=DIGEST_PATTERN)]


class ApprovalError(errors.MlopsError):
    """A plan lacks the approvals its policy requires, or they are for another plan."""


class Approval(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    by: Name
    at: str = Field(max_length=40, description="ISO 8601, UTC")
    plan_digest: Digest
    comment: str = Field(default="", max_length=MAX_COMMENT)


class ApprovalsFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: Literal[1] = FORMAT_VERSION
    approvals: list[Approval] = Field(default_factory=list, max_length=MAX_APPROVALS)


def digest(plan: plan_types.Plan) -> str:
    """sha256 of the plan's canonical JSON: what an approval is bound to."""
    blob = json.dumps(plan.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


def path_for(plan_path: Path) -> Path:
    return plan_path.with_name(plan_path.name + SUFFIX)


def check_name(name: str) -> str:
    if not re.match(NAME_PATTERN, name):
        raise errors.UsageError(
            f"--by {_short(name)}: a name is 1-64 characters of letters, digits and ._@+- "
            "(starting with a letter or digit)"
        )
    return name


def check_comment(comment: str) -> str:
    if len(comment) > MAX_COMMENT:
        raise errors.UsageError(f"--comment is {len(comment)} characters (at most {MAX_COMMENT})")
    if any(not c.isprintable() for c in comment):
        raise errors.UsageError("--comment must be one line of printable text")
    return comment


def read(plan_path: Path) -> list[Approval]:
    """The approvals recorded beside `plan_path` (none when the file does not exist)."""
    path = path_for(plan_path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return []
    if size > MAX_BYTES:
        raise errors.UsageError(f"{path}: {size} bytes is too large for an approvals file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return list(ApprovalsFile.model_validate(data).approvals)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise errors.UsageError(f"{path}: not an approvals file (invalid JSON)") from None
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])[:120]
        message = _printable(str(first["msg"]))[:200]
        raise errors.UsageError(f"{path}: invalid approvals file: {where}: {message}") from None


def record(
    plan_path: Path, plan: plan_types.Plan, by: str, comment: str = "", now: datetime | None = None
) -> Approval:
    """Add (or renew) `by`'s approval of this plan's content; earlier approvals of other
    content stay as history, the oldest dropped first when the file is full."""
    check_name(by)
    check_comment(comment)
    when = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    approval = Approval(by=by, at=when, plan_digest=digest(plan), comment=comment)
    kept = [
        a
        for a in read(plan_path)
        if not (a.by == approval.by and a.plan_digest == approval.plan_digest)
    ]
    kept = [*kept, approval][-MAX_APPROVALS:]
    payload = ApprovalsFile(approvals=kept).model_dump(mode="json")
    fsio.atomic_write(path_for(plan_path), json.dumps(payload, indent=2) + "\n")
    return approval


@dataclass(frozen=True)
class Standing:
    """The approvals of one plan: those of its digest (counted) and those of other content."""

    digest: str
    current: tuple[Approval, ...]
    stale: tuple[Approval, ...]

    @property
    def approvers(self) -> list[str]:
        return sorted({a.by for a in self.current})


def standing(plan: plan_types.Plan, recorded: list[Approval]) -> Standing:
    plan_digest = digest(plan)
    return Standing(
        digest=plan_digest,
        current=tuple(a for a in recorded if a.plan_digest == plan_digest),
        stale=tuple(a for a in recorded if a.plan_digest != plan_digest),
    )


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


def _short(value: str) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:39] + "…"
