"""Core vocabulary shared by every layer: addresses, verdicts, durations."""

from __future__ import annotations

import re
from enum import StrEnum

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class Verdict(StrEnum):
    """Outcome of one gate measurement. Errors are data, not exceptions."""

    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"


def parse_duration(text: str | int | float) -> float:
    """Parse `500ms`, `30s`, `5m`, `2h` (or a bare number of seconds) into seconds."""
    if isinstance(text, bool):
        raise ValueError("a duration is a number with a unit: ms, s, m or h")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        return float(text)
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"invalid duration {text!r}: use a number with ms, s, m or h (e.g. 30s)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def format_duration(seconds: float) -> str:
    """Render seconds compactly: 90 -> '1m30s', 0.25 -> '250ms'."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(hours, "h"), (minutes, "m"), (secs, "s")]
    return "".join(f"{value}{unit}" for value, unit in parts if value) or "0s"


class Address(str):
    """Stable identity of a managed thing.

    `deployment.NAME`, `version.NAME@SEMVER`, `traffic.NAME` or `engine.NAME`.
    """

    __slots__ = ()

    @classmethod
    def deployment(cls, name: str) -> Address:
        return cls(f"deployment.{name}")

    @classmethod
    def version(cls, name: str, semver: str) -> Address:
        return cls(f"version.{name}@{semver}")

    @classmethod
    def traffic(cls, name: str) -> Address:
        return cls(f"traffic.{name}")

    @classmethod
    def engine(cls, name: str) -> Address:
        """The engine every model shares (local target), changed as a step of NAME's plan."""
        return cls(f"engine.{name}")

    @property
    def kind(self) -> str:
        return self.split(".", 1)[0]

    @property
    def model(self) -> str:
        return self.split(".", 1)[1].split("@", 1)[0]
