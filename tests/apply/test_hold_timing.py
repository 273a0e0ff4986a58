"""Gate rounds are spaced by the interval (issue 10: "three gate rounds of one hold were
recorded within 0.35 s although the interval is 2 s").

Everything runs on a virtual clock: the built-in scraper reads engine exposition text (as a
worker's /metrics writes it) through an injected page source, the hold sleeps on the same
clock, and a slow backend is a scrape that moves the clock on. Rounds are counted per
simulated time; nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from mlops import errors
from mlops.apply import checkpoints, executor, journal, recorders
from mlops.apply import hooks as hooks_
from mlops.apply import target as target_
from mlops.gates import evaluate as gates
from mlops.plan import types as t
from mlops.providers import factory
from mlops.providers.engine import client as engine_client
from mlops.providers.engine.runtime import LocalRuntime
from mlops.providers.metrics import builtin as builtin_metrics
from tests.runtime import support

INTERVAL = 2.0
HOLD = 10.0
AFTER: dict[str, Any] = {
    "stable": "1.0.0",
    "canary": "1.1.0",
    "weight": 0,
    "hold": HOLD,
    "interval": INTERVAL,
    "min_requests": 10,
    "consecutive_errors": 3,
    "gates": [{"metric": "error_rate", "max": 0.01}, {"metric": "latency_p99", "max": 100}],
    "shadow": True,
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "a hold never sleeps for nothing"
        self.now += seconds


def page(elapsed: float) -> str:
    """One worker's exposition after `elapsed` seconds of 50 req/s to each version, the
    canary's requests mirrored to it as a shadow."""
    lines = ["# TYPE mlops_requests counter", "# TYPE mlops_request_duration_seconds histogram"]
    for version, route in (("1.0.0", "routed"), ("1.1.0", "shadow")):
        labels = f'model="m",version="{version}",route="{route}"'
        served = 50.0 * elapsed
        lines.append(f'mlops_requests_total{{{labels},code="200"}} {served}')
        for le in ("0.005", "+Inf"):
            lines.append(f'mlops_request_duration_seconds_bucket{{{labels},le="{le}"}} {served}')
    return "\n".join(lines) + "\n"


class Backend:
    """The page source of the scraper: `slow[i]` seconds pass during the i-th scrape (a
    backend timing out), `down[i]` makes the i-th scrape fail."""

    def __init__(
        self, clock: Clock, slow: Mapping[int, float] = {}, down: Sequence[int] = ()
    ) -> None:
        self.clock, self.slow, self.down = clock, slow, set(down)
        self.scrapes = 0

    def fetch(self, url: str) -> str:
        index, self.scrapes = self.scrapes, self.scrapes + 1
        self.clock.now += self.slow.get(index, 0.0)
        if index in self.down:
            raise engine_client.EngineUnavailable(f"{url} did not answer within 5.0s")
        return page(self.clock.now - 900.0)


class Rounds(hooks_.Hook):
    """The simulated time at which each gate round was recorded, and its decision."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.at: list[float] = []
        self.decisions: list[gates.Decision] = []
        self.verdicts: list[list[gates.Verdict]] = []
        self.hold_starts: list[float] = []

    def on_hold_start(self, model: str, checkpoint: Mapping[str, Any], remaining: float) -> None:
        self.hold_starts.append(self.clock.now)

    def on_measurement(
        self,
        model: str,
        checkpoint: Mapping[str, Any],
        measurements: Sequence[gates.Measurement],
        decision: gates.Decision,
    ) -> None:
        self.at.append(self.clock.now)
        self.decisions.append(decision)
        self.verdicts.append([m.verdict for m in measurements])


def assert_spaced(at: Sequence[float], start: float) -> None:
    """The first round a full interval into the hold; never two rounds within one interval."""
    assert at and at[0] - start >= INTERVAL
    gaps = [b - a for a, b in itertools.pairwise(at)]
    assert all(gap >= INTERVAL for gap in gaps), f"rounds at {at}"
    for moment in at:
        assert len([x for x in at if moment <= x < moment + INTERVAL]) == 1


def run_hold(
    backend: Backend, clock: Clock, admin_urls: Callable[[], list[str]] = lambda: ["w0"]
) -> tuple[checkpoints.HoldResult, Rounds]:
    metrics = builtin_metrics.BuiltinMetrics(admin_urls, clock=clock, fetch=backend.fetch)
    point = checkpoints.Checkpoint.from_action("m/05-checkpoint_gate-0", "m", AFTER)
    rounds = Rounds(clock)
    result = checkpoints.hold(point, metrics, rounds, clock=clock, sleep=clock.sleep)
    return result, rounds


def test_rounds_on_time_fall_every_interval_until_the_end_of_the_hold() -> None:
    clock = Clock()
    result, rounds = run_hold(Backend(clock), clock)
    assert result.decision is gates.Decision.PROMOTE
    start = rounds.hold_starts[0]
    assert [at - start for at in rounds.at] == [2.0, 4.0, 6.0, 8.0, 10.0]


def test_a_slow_round_is_not_followed_by_rounds_catching_up() -> None:
    # The first round's scrape takes 5 s (a backend timing out once). Before the fix the
    # rounds due at 4 s and 6 s ran at once after it: three rounds at the same moment.
    clock = Clock()
    result, rounds = run_hold(Backend(clock, slow={1: 5.0}), clock)
    assert result.decision is gates.Decision.PROMOTE
    assert_spaced(rounds.at, rounds.hold_starts[0])
    start = rounds.hold_starts[0]
    # Then a full interval would leave less than one before the end: the last round is there.
    assert [at - start for at in rounds.at] == [7.0, 10.0]


def test_rounds_that_take_most_of_an_interval_still_leave_a_full_interval_between() -> None:
    # Every scrape takes 1.5 s of the 2 s interval (a loaded machine, a slow Prometheus).
    clock = Clock()
    slow = {i: 1.5 for i in range(1, 50)}
    result, rounds = run_hold(Backend(clock, slow=slow), clock)
    assert result.decision is gates.Decision.PROMOTE
    assert_spaced(rounds.at, rounds.hold_starts[0])
    # A round is two scrapes (3 s): rounds start at 2 s and 7 s; the second runs into the end
    # of the hold and so is the last. The hold is not stretched for a round of its own.
    assert [at - rounds.hold_starts[0] for at in rounds.at] == [5.0, 10.0]


def test_a_failed_scrape_is_a_round_the_next_one_waits_a_full_interval() -> None:
    # The first two rounds (two scrapes each) fail after a 1 s timeout: error verdicts,
    # counted by the tracker, each followed by a full interval.
    clock = Clock()
    down = (1, 2, 3, 4)
    result, rounds = run_hold(Backend(clock, slow={1: 1.0, 3: 1.0}, down=down), clock)
    assert rounds.verdicts[0] == [gates.Verdict.ERROR] * 2
    assert rounds.verdicts[1] == [gates.Verdict.ERROR] * 2
    assert result.decision is gates.Decision.PROMOTE
    assert_spaced(rounds.at, rounds.hold_starts[0])


def test_a_transient_error_escaping_the_provider_is_an_error_round_not_a_crash() -> None:
    # Where the workers are is read on every round; reading it can fail transiently (an
    # engine restarting). Before the fix the error ended the hold, and the apply with it.
    clock = Clock()
    calls = {"n": 0}

    def admin_urls() -> list[str]:
        calls["n"] += 1
        if calls["n"] in (2, 3):  # the first round (call 1 is the snapshot at hold start)
            clock.now += 0.5
            raise errors.TransientError("engine record is being rewritten")
        return ["w0"]

    result, rounds = run_hold(Backend(clock), clock, admin_urls)
    assert rounds.verdicts[0] == [gates.Verdict.ERROR] * 2
    assert result.decision is gates.Decision.PROMOTE
    assert_spaced(rounds.at, rounds.hold_starts[0])


def test_repeated_errors_abort_only_after_as_many_spaced_rounds() -> None:
    clock = Clock()
    down = range(1, 50)
    result, rounds = run_hold(Backend(clock, slow={i: 0.5 for i in down}, down=down), clock)
    assert result.decision is gates.Decision.ABORT
    assert len(rounds.at) == AFTER["consecutive_errors"]
    assert_spaced(rounds.at, rounds.hold_starts[0])


@pytest.mark.parametrize(
    ("hold", "interval", "times"),
    [
        (10.0, 2.0, [2.0, 4.0, 6.0, 8.0, 10.0]),
        # A grid point closer than an interval to the end of the hold is left out.
        (5.0, 2.0, [2.0, 5.0]),
        (1.0, 5.0, [1.0]),
        (8.0, 8.0, [8.0]),
    ],
)
def test_sample_times_are_an_interval_apart(
    hold: float, interval: float, times: list[float]
) -> None:
    assert checkpoints.sample_times(hold, interval) == times


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it is journaled."""


class KillAfter(hooks_.Hook):
    def __init__(self, rounds: int) -> None:
        self.left = rounds

    def on_measurement(
        self,
        model: str,
        checkpoint: Mapping[str, Any],
        measurements: Sequence[gates.Measurement],
        decision: gates.Decision,
    ) -> None:
        self.left -= 1
        if self.left == 0:
            raise Killed()


def test_a_resumed_hold_starts_over_with_a_full_interval(tmp_path: Path) -> None:
    """An apply killed in a hold and re-run: the resumed hold is a whole new hold (the live
    weight is checked again, the first round a full interval into it); rounds of the killed
    run and of the resumed one never come within an interval of each other."""
    ws = support.make_workspace(tmp_path / "ws")
    action = t.Action(
        id="m/05-checkpoint_gate-0",
        address="traffic.m",
        kind=t.ActionKind.CHECKPOINT_GATE,
        symbol=t.ChangeSymbol.UPDATE,
        after=AFTER,
    )
    plan = t.Plan(
        created_at="2026-01-01T00:00:00+00:00",
        workspace="w",
        spec_digest="d",
        state_fingerprint="f",
        actions=[action],
    )
    clock = Clock()
    backend = Backend(clock)
    rounds = Rounds(clock)
    run = journal.Journal.create(ws.ensure_state_dir(), plan, None)

    def target() -> target_.Target:
        # A new process after the kill: a new scraper with an empty series. No engine runs
        # (nothing is served in a shadow hold's live weight), so no worker is asked.
        metrics = builtin_metrics.BuiltinMetrics(lambda: ["w0"], clock=clock, fetch=backend.fetch)
        return target_.Target(ws, factory.registry(ws), LocalRuntime(ws), lambda: metrics)

    killed = hooks_.Hooks([recorders.JournalHook(run), rounds, KillAfter(2)])
    with pytest.raises(Killed):
        executor.Executor(target(), plan, run, killed, sleep=clock.sleep, clock=clock).execute(
            resumed=False
        )
    assert len(rounds.at) == 2 and action.id not in run.completed()

    clock.now += 0.3  # the re-run starts right away
    resumed_at = clock.now
    again = hooks_.Hooks([recorders.JournalHook(run), rounds])
    result = executor.Executor(target(), plan, run, again, sleep=clock.sleep, clock=clock).execute(
        resumed=True
    )
    assert result.outcome is executor.Outcome.APPLIED and action.id in run.completed()
    assert len(rounds.hold_starts) == 2
    resumed = [at for at in rounds.at if at > resumed_at]
    assert [at - rounds.hold_starts[1] for at in resumed] == [2.0, 4.0, 6.0, 8.0, 10.0]
    assert_spaced(rounds.at, rounds.hold_starts[0])
