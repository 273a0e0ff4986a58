"""Run the spec's `monitoring.drift.on_drift.command` when drift is found.

Opt-in (`mlops drift --run-hook`): a drift report is something SREs run ad hoc and in cron,
and reading a report must not start a retraining job by surprise; the same `mlops drift`
line with `--run-hook` is what a scheduler runs. The command is split with shlex and run
without a shell, in the workspace directory, with a bounded time and captured output.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlops import errors

DEFAULT_TIMEOUT = 600.0
# Enough of a failing command's output to see why, without flooding a terminal or JSON.
OUTPUT_LIMIT = 16_384


@dataclass(frozen=True)
class HookResult:
    command: str
    exit_code: int | None  # None when it did not finish (timeout) or did not start
    seconds: float
    output: str  # stdout and stderr interleaved, the last OUTPUT_LIMIT characters
    error: str | None = None  # why it failed, in one line
    attempts: int = 1  # a webhook's POSTs (retried); a command runs once

    @property
    def ok(self) -> bool:
        return self.error is None


def split(command: str) -> list[str]:
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise errors.UsageError(f"on_drift command {command!r} cannot be parsed: {exc}") from None
    if not argv:
        raise errors.UsageError("on_drift command is empty")
    return argv


def drift_env(
    name: str, version: str, features: Sequence[str], report: Path | None
) -> dict[str, str]:
    """What the hook learns about the drift, as environment variables."""
    return {
        "MLOPS_DRIFT_MODEL": name,
        "MLOPS_DRIFT_VERSION": version,
        "MLOPS_DRIFT_FEATURES": ",".join(features),
        "MLOPS_DRIFT_REPORT": str(report) if report else "",
    }


def run(
    command: str,
    cwd: Path,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> HookResult:
    argv = split(command)
    started = time.monotonic()
    try:
        # Own session: on timeout the whole process group goes, not only the direct child.
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return HookResult(command, None, 0.0, "", f"cannot start {argv[0]!r}: {reason}")
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        try:
            out, _ = process.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # a descendant left the group and holds the pipe
            out = b""
        return HookResult(
            command, None, time.monotonic() - started, _tail(out), f"timed out after {timeout:g}s"
        )
    seconds = time.monotonic() - started
    code = process.returncode
    error = None if code == 0 else f"exited with code {code}"
    return HookResult(command, code, seconds, _tail(out), error)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _tail(raw: bytes | None) -> str:
    text = (raw or b"").decode("utf-8", errors="replace")
    return text[-OUTPUT_LIMIT:]
