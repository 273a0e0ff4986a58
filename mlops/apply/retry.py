"""The one retry policy of apply: transient provider errors, bounded backoff, at the boundary.

The executor runs every action (and every step of a rollback) through `Policy.call`; handlers
and providers never loop on errors themselves. Only `errors.TransientError` (a worker that did
not answer or did not confirm, a backend briefly unreachable) is retried: every action is
idempotent against live state, so running it again is safe. Anything else stops at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from mlops import errors
from mlops.apply import hooks as hooks_

T = TypeVar("T")

ATTEMPTS = 5
DEADLINE_S = 60.0  # no new attempt starts later than this after the first one
FIRST_WAIT_S = 0.5
MAX_WAIT_S = 8.0


@dataclass(frozen=True)
class Policy:
    attempts: int = ATTEMPTS
    deadline: float = DEADLINE_S
    first_wait: float = FIRST_WAIT_S
    max_wait: float = MAX_WAIT_S
    sleep: Callable[[float], None] = time.sleep

    def call(self, fn: Callable[[], T], what: str, hooks: hooks_.Hook) -> T:
        """`fn()`, again after a growing pause while it raises TransientError; the last
        error once the attempts or the deadline are used up. Each retry is reported."""

        def report(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            pause = state.next_action.sleep if state.next_action else 0.0
            hooks.on_message(
                f"{what}: {error}; retrying in {pause:.1f}s "
                f"(attempt {state.attempt_number + 1} of {self.attempts})"
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(errors.TransientError),
            stop=tenacity.stop_after_attempt(self.attempts)
            | tenacity.stop_after_delay(self.deadline),
            wait=tenacity.wait_exponential_jitter(multiplier=self.first_wait, max=self.max_wait),
            sleep=self.sleep,
            before_sleep=report,
            reraise=True,
        )
        return retrying(fn)
