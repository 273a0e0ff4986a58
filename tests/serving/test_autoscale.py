"""The local engine's autoscaling decision (pure: readings and times in, a count out), the
engine policy from the models' settings, and the scale-event log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops.serving import autoscale
from mlops.serving.autoscale import Autoscaler, Load, Policy
from mlops.spec import engine as engine_settings

POLICY = Policy(min=1, max=3, target=2.0, scale_up_cooldown=10.0, scale_down_cooldown=30.0)


def feed(
    scaler: Autoscaler, count: int, inflight: float, cpu: float, start: float, end: float
) -> tuple[float, autoscale.Change] | None:
    """Readings every half second from `start` to `end`; the first change decided, or None."""
    t = start
    while t <= end:
        change = scaler.decide(count, Load(t, inflight, cpu))
        if change is not None:
            return t, change
        t += 0.5
    return None


def test_a_load_step_adds_workers_after_a_full_window_and_the_up_cooldown() -> None:
    scaler = Autoscaler(POLICY, now=0.0)
    # 7 requests in flight on one worker, target 2: three workers would be needed.
    decided = feed(scaler, 1, 7.0, 0.3, 0.0, 60.0)
    assert decided is not None
    at, change = decided
    assert at >= POLICY.scale_up_cooldown and change.count == 3
    assert "7 requests in flight per worker > target 2" in change.reason


def test_cpu_alone_adds_a_worker() -> None:
    scaler = Autoscaler(POLICY, now=0.0)
    decided = feed(scaler, 1, 0.5, 0.97, 0.0, 60.0)
    assert decided is not None and decided[1].count == 2
    assert "0.97 CPU per worker > 0.8" in decided[1].reason


def test_inside_the_tolerance_band_nothing_changes() -> None:
    scaler = Autoscaler(POLICY, now=0.0)
    # 2 workers at 2.1 each: over target but within +10%; one fewer would be 4.2 > 1.8.
    assert feed(scaler, 2, 4.2, 0.5, 0.0, 300.0) is None


def test_a_worker_is_removed_only_after_the_load_stayed_low_for_the_down_cooldown() -> None:
    scaler = Autoscaler(POLICY, now=0.0)
    scaler.changed(100.0)  # the last change (a scale-up) was at t=100
    assert feed(scaler, 3, 6.5, 0.5, 100.0, 160.0) is None  # still busy: keep 3
    decided = feed(scaler, 3, 1.0, 0.1, 160.5, 400.0)
    assert decided is not None
    at, change = decided
    assert at - 160.5 >= POLICY.scale_down_cooldown and change.count == 2
    assert "2 would stay under target 2" in change.reason
    # A busy spell (a window long) in between starts the quiet period over.
    scaler.changed(at)
    assert feed(scaler, 2, 0.5, 0.1, at, at + 20.0) is None
    assert feed(scaler, 2, 3.9, 0.1, at + 20.5, at + 27.0) is None
    later = feed(scaler, 2, 0.5, 0.1, at + 27.5, at + 400.0)
    assert later is not None and later[0] - (at + 27.5) >= POLICY.scale_down_cooldown


def test_the_policy_bounds_win_at_once() -> None:
    scaler = Autoscaler(POLICY, now=0.0)
    low = scaler.decide(5, Load(0.0, 0.0, 0.0))
    high = scaler.decide(0, Load(0.0, 0.0, 0.0))
    assert low is not None and low.count == 3 and "maximum of 3" in low.reason
    assert high is not None and high.count == 1


def scaling(**fields: object) -> engine_settings.EngineAutoscaling:
    return engine_settings.EngineAutoscaling.model_validate(
        {"target": 4, "min": 1, "max": 4, **fields}
    )


def test_the_engine_policy_is_the_tightest_of_the_models() -> None:
    policy = autoscale.combine(
        {
            "a": scaling(target=8, min=2, max=6, scale_down_cooldown=60),
            "b": scaling(target=3, min=1, max=3),
            "c": scaling(metric="gpu_utilization", target=0.5, min=5, max=9),
        }
    )
    assert policy is not None
    assert (policy.min, policy.max, policy.target) == (2, 3, 3.0)
    assert policy.scale_down_cooldown == 120.0 and policy.models == ("a", "b")
    assert autoscale.combine({"c": scaling(metric="gpu_utilization", target=0.5)}) is None


def test_the_policy_is_read_from_the_staged_settings_of_the_loaded_versions(
    tmp_path: Path,
) -> None:
    state, repo = tmp_path / "state", tmp_path / "repo"
    state.mkdir()
    doc = {"models": {"m": {"loaded": ["1.0.0", "1.1.0"]}, "n": {"loaded": ["2.0.0"]}}}
    (state / "desired.json").write_text(json.dumps(doc))
    for name, version, section in [
        ("m", "1.0.0", {"target": 4, "min": 1, "max": 3}),
        ("m", "1.1.0", {"target": 2, "min": 1, "max": 2}),
        ("n", "2.0.0", None),
    ]:
        (repo / name / version).mkdir(parents=True)
        settings = {"signature": {}, "autoscaling": section} if section else {"signature": {}}
        (repo / name / version / "settings.json").write_text(json.dumps(settings))
    policy = autoscale.read_policy(state, repo)
    assert policy is not None and (policy.min, policy.max, policy.target) == (1, 2, 2.0)
    # Hostile input: a bad section is skipped with a log line, never raised.
    (repo / "m" / "1.1.0" / "settings.json").write_text('{"autoscaling": {"target": -1}}')
    policy = autoscale.read_policy(state, repo)
    assert policy is not None and policy.max == 3
    assert autoscale.read_policy(state, None) is None


@pytest.mark.parametrize(
    "bad",
    [{"target": 0}, {"target": 1, "min": 0}, {"target": 1, "max": 65}, {"target": 1, "x": 1}],
)
def test_hostile_autoscaling_settings_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        engine_settings.EngineAutoscaling.model_validate(bad)


def test_the_event_log_keeps_the_newest_events(tmp_path: Path) -> None:
    log = autoscale.EventLog(tmp_path)
    for i in range(autoscale.MAX_EVENTS + 5):
        log.append(1, 2, "autoscale", f"event {i}")
    lines = log.read_lines()
    assert len(lines) == autoscale.MAX_EVENTS
    assert json.loads(lines[-1])["reason"] == f"event {autoscale.MAX_EVENTS + 4}"


def test_no_worker_is_added_or_removed_while_a_controller_change_is_under_way() -> None:
    scaler = Autoscaler(POLICY, now=0.0)
    t = 0.0
    while t < 60.0:  # busy all along, but a load or routing change never finishes
        assert scaler.decide(1, Load(t, 7.0, 0.3, settled=False)) is None
        t += 0.5
    assert scaler.decide(1, Load(t, 7.0, 0.3, settled=True)) is not None
    scaler.changed(100.0)
    t = 100.0
    while t < 300.0:
        assert scaler.decide(3, Load(t, 0.0, 0.0, settled=False)) is None
        t += 0.5
    assert scaler.decide(3, Load(t, 0.0, 0.0, settled=True)) is not None


def test_a_worker_view_compares_only_what_the_desired_state_routes() -> None:
    wanted = (["m@1.0.0"], {"m": 3})
    same = autoscale._view(["m@1.0.0"], {"m": 3, "deleted": 9}, wanted)
    assert same == autoscale._view(["m@1.0.0"], {"m": 3}, wanted)
    assert same != autoscale._view(["m@1.0.0"], {"m": 2}, wanted)
    assert same != autoscale._view(["m@1.0.0", "m@1.1.0"], {"m": 3}, wanted)
