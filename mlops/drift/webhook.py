"""POST the drift to the spec's `monitoring.drift.on_drift.webhook`, with retries.

The document names the model, the version, the drifted features and every feature's
statistics (the JSON of `mlops drift --format json`, trimmed of plots). A transport error,
a 5xx or a 429 is retried with a growing, jittered pause (tenacity, as apply's retries);
any other status is an answer and is not retried. Every attempt is reported to the caller.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import tenacity

from mlops.drift import hook, report

ATTEMPTS = 4
FIRST_WAIT_S = 0.5
MAX_WAIT_S = 8.0
RESPONSE_LIMIT = 4096  # bytes of the receiver's answer read and kept for the log
PAYLOAD_FORMAT = 1

# (attempt number, outcome in one line): each POST as it ends.
Attempted = Callable[[int, str], None]


class _Retry(Exception):
    """A failed attempt worth repeating (transport error, 5xx, 429)."""


def payload(run: report.DriftRun) -> dict[str, Any]:
    doc = report.to_json(run)
    return {
        "format_version": PAYLOAD_FORMAT,
        "event": "drift",
        "model": run.model,
        "version": run.version,
        "features": doc["drifted"],
        "threshold_sigma": doc["threshold_sigma"],
        "rows": doc["rows"],
        "data": doc["data"],
        "statistics": doc["features"],
    }


def post(
    url: str,
    body: dict[str, Any],
    *,
    timeout: float = 10.0,
    attempts: int = ATTEMPTS,
    first_wait: float = FIRST_WAIT_S,
    max_wait: float = MAX_WAIT_S,
    on_attempt: Attempted | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> hook.HookResult:
    started = time.monotonic()
    last: list[tuple[int | None, str]] = []  # (status, response text or error)

    def once() -> httpx.Response:
        number = len(last) + 1
        try:
            # Streamed: only the first RESPONSE_LIMIT bytes of the answer are ever read.
            with httpx.stream(
                "POST", url, json=body, timeout=timeout, follow_redirects=False
            ) as response:
                head = b""
                for chunk in response.iter_bytes():
                    head += chunk
                    if len(head) >= RESPONSE_LIMIT:
                        break
        except httpx.HTTPError as exc:
            reason = " ".join((str(exc) or type(exc).__name__).split())
            last.append((None, reason))
            _tell(on_attempt, number, f"POST {url}: {reason}")
            raise _Retry(reason) from None
        text = head[:RESPONSE_LIMIT].decode("utf-8", errors="replace")
        last.append((response.status_code, text))
        _tell(on_attempt, number, f"POST {url}: HTTP {response.status_code}")
        if response.status_code >= 500 or response.status_code == 429:
            raise _Retry(f"HTTP {response.status_code}")
        return response

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(_Retry),
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential_jitter(
            multiplier=first_wait, max=max_wait, jitter=first_wait
        ),
        sleep=sleep,
        reraise=True,
    )
    command = f"POST {url}"
    try:
        response = retrying(once)
    except _Retry as exc:
        status, text = last[-1]
        return hook.HookResult(
            command,
            status,
            time.monotonic() - started,
            text,
            f"failed after {len(last)} attempt(s): {exc}",
            attempts=len(last),
        )
    seconds = time.monotonic() - started
    status = response.status_code
    error = None if 200 <= status < 300 else f"answered HTTP {status}"
    return hook.HookResult(command, status, seconds, last[-1][1], error, attempts=len(last))


def _tell(on_attempt: Attempted | None, number: int, line: str) -> None:
    if on_attempt is not None:
        on_attempt(number, line)
