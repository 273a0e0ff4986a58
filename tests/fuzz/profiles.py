"""Hypothesis budgets for the fuzz tests: `ci` (the default, about a minute for every target
together) and `fuzz` (`make fuzz`: HYPOTHESIS_PROFILE=fuzz, 10 times the examples).

The profiles are applied per test (`budget(n)`), never loaded globally, so the rest of the
suite keeps its own hypothesis settings when the fuzz tests run in the same session.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

SCALES = {"ci": 1, "fuzz": 10}
_COMMON = {
    "deadline": None,  # a shared CI machine has slow moments; hangs are caught by the timeout
    "suppress_health_check": list(HealthCheck),
    "print_blob": True,  # a failure prints the @reproduce_failure blob to paste
}
settings.register_profile("ci", **_COMMON)  # type: ignore[arg-type]
settings.register_profile("fuzz", **_COMMON)  # type: ignore[arg-type]

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
if PROFILE not in SCALES:
    PROFILE = "ci"
SCALE = SCALES[PROFILE]
# Per-test wall-clock bound (pytest-timeout): a parser that hangs fails the run.
TIMEOUT_S = 120 * SCALE


def budget(examples: int) -> settings:
    """The profile's settings with `examples` (times the profile's scale) examples."""
    return settings(settings.get_profile(PROFILE), max_examples=examples * SCALE)
