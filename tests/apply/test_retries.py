"""Retries at one boundary (issue 10): transient errors are retried by the executor's one
policy (`mlops.apply.retry`), never inside a handler; a rollback finishes, or says which worker
did not confirm and what it holds.

Against a real engine with two worker processes and MLflow on sqlite. One worker is made
silent with SIGSTOP: left stopped it never answers; continued (SIGCONT) at the first retry it
answers late.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlops import errors
from mlops.apply import executor, journal, recorders, retry
from mlops.apply import hooks as hooks_
from mlops.apply import rollback as rollback_
from mlops.apply import target as target_
from mlops.plan import order
from mlops.plan import types as t
from mlops.providers import base, factory
from mlops.providers.engine.runtime import LocalRuntime
from mlops.providers.mlflow.registry import MlflowRegistry
from mlops.workspace import Workspace
from tests.runtime import support
from tests.serving import fixtures

pytestmark = pytest.mark.slow

MODEL = "clf"
ANCHOR = f"{MODEL}/07-checkpoint_gate-25"
SETTINGS = fixtures.classifier_settings()
# Quick pauses: the policy is the real one, only its timings are shortened.
FAST = retry.Policy(attempts=3, first_wait=0.1, max_wait=0.3)


class Listener(hooks_.Hook):
    """Keeps every message; runs `at_first_retry` once, when the first retry is announced."""

    def __init__(self, at_first_retry: Callable[[], None] | None = None) -> None:
        self.messages: list[str] = []
        self.at_first_retry = at_first_retry

    def on_message(self, text: str) -> None:
        self.messages.append(text)
        if "retrying" in text and self.at_first_retry is not None:
            action, self.at_first_retry = self.at_first_retry, None
            action()

    @property
    def retries(self) -> list[str]:
        return [m for m in self.messages if "retrying" in m]


@dataclass
class Rig:
    ws: Workspace
    runtime: LocalRuntime
    target: target_.Target

    def worker_pid(self, index: int) -> int:
        doc = json.loads((self.runtime.process.state_dir / f"worker-{index}.json").read_text())
        return int(doc["pid"])

    def stop(self, index: int) -> None:
        os.kill(self.worker_pid(index), signal.SIGSTOP)

    def cont(self, index: int) -> None:
        os.kill(self.worker_pid(index), signal.SIGCONT)

    def tables(self) -> list[dict[str, Any]]:
        """Each worker's routing table of the model, read directly from the worker."""
        found = []
        headers = {}
        token = self.runtime.process.admin_token()
        if token:
            headers["authorization"] = f"Bearer {token}"
        for url in self.runtime.worker_admin_urls():
            table = httpx.get(f"{url}/v2/routing", headers=headers, timeout=5).json()
            found.append(table["models"].get(MODEL) or {})
        return found

    def loaded(self) -> list[set[str]]:
        found = []
        for url in self.runtime.worker_admin_urls():
            rows = httpx.post(f"{url}/v2/repository/index", json={}, timeout=5).json()
            found.append({r["version"] for r in rows if r["state"] == "READY"})
        return found

    def desired(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.runtime.desired_file.read_text())
        return dict(doc["models"][MODEL])

    def journal(self, plan: t.Plan | None = None) -> journal.Journal:
        return journal.Journal.create(self.ws.ensure_state_dir(), plan or _plan(), None)


def _plan(*actions: t.Action) -> t.Plan:
    return t.Plan(
        created_at="2026-01-01T00:00:00+00:00",
        workspace="w",
        spec_digest="d",
        state_fingerprint="f",
        actions=list(actions),
    )


def _no_metrics() -> base.Metrics:
    raise AssertionError("no gate is measured in these tests")


@pytest.fixture(scope="session")
def registry_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("registry")
    ws = support.make_workspace(root)
    registry = factory.registry(ws)
    assert isinstance(registry, MlflowRegistry)
    registry.initialise()  # reads never create the database
    return ws.state_dir / "mlflow.db"


@pytest.fixture
def rig(tmp_path: Path, registry_db: Path) -> Iterator[Rig]:
    """1.0.0 at 75% and 1.1.0 at 25% on two workers, as in a canary hold."""
    ws = support.make_workspace(tmp_path / "ws")
    ws.ensure_state_dir()
    shutil.copy(registry_db, ws.state_dir / "mlflow.db")
    runtime = LocalRuntime(ws, admin_timeout=2.0)
    runtime.start(2)
    rig = Rig(ws, runtime, target_.Target(ws, factory.registry(ws), runtime, _no_metrics))
    try:
        runtime.load(MODEL, "1.0.0", support.classifier_artifact(tmp_path, 0), SETTINGS)
        runtime.load(MODEL, "1.1.0", support.classifier_artifact(tmp_path, 1), SETTINGS)
        runtime.set_traffic(MODEL, {"1.0.0": 75, "1.1.0": 25}, None)
        yield rig
    finally:
        for index in range(2):
            with contextlib.suppress(OSError, ValueError):
                rig.cont(index)
        runtime.stop()


def _rollback() -> rollback_.Rollback:
    """What the plan shows for a canary 1.1.0 over stable 1.0.0 stopped in its 25% hold."""
    steps = order.undo(
        MODEL, "1.1.0", "1.0.0", traffic=True, loaded=True, canary_alias=False, anchor=ANCHOR
    )
    return rollback_.Rollback(MODEL, "1.1.0", "1.0.0", "gate failed", False, ANCHOR, tuple(steps))


def test_a_rollback_waits_for_a_worker_that_answers_late(rig: Rig) -> None:
    late = rig.runtime.worker_admin_urls()[1]
    rig.stop(1)
    listener = Listener(at_first_retry=lambda: rig.cont(1))
    run = rig.journal()
    hooks = hooks_.Hooks([recorders.JournalHook(run), listener])
    result = rollback_.run(rig.target, hooks, _rollback(), run_journal=run, policy=FAST)

    assert result.weights == {"1.0.0": 100}
    # The first attempt could not confirm the late worker; the retry did.
    assert len(listener.retries) == 1
    assert late in listener.retries[0] and "did not answer" in listener.retries[0]
    for table in rig.tables():
        assert table["weights"] == {"1.0.0": 100} and table["generation"] == result.generation
    assert rig.loaded() == [{"1.0.0"}, {"1.0.0"}]
    assert rig.desired()["weights"] == {"1.0.0": 100}
    assert rig.desired()["loaded"] == ["1.0.0"]
    assert not run.unfinished_rollbacks() and MODEL in run.rollbacks()


def test_a_worker_that_never_answers_stops_the_rollback_with_its_state(rig: Rig) -> None:
    silent = rig.runtime.worker_admin_urls()[1]
    rig.stop(1)
    listener = Listener()
    run = rig.journal()
    hooks = hooks_.Hooks([recorders.JournalHook(run), listener])
    with pytest.raises(rollback_.RollbackIncomplete) as info:
        rollback_.run(rig.target, hooks, _rollback(), run_journal=run, policy=FAST)
    message = info.value.message

    # Bounded: the policy's attempts, then the worker, what it held, what is done and not.
    assert len(listener.retries) == FAST.attempts - 1
    assert f"{silent} did not answer" in message
    assert "last read from it: generation" in message and "1.0.0 75% / 1.1.0 25%" in message
    assert "confirmed by 1 of 2 workers" in message
    assert "Done: nothing; not done: traffic 1.0.0 100%; unload 1.1.0" in message
    assert "mlops rollback clf" in message
    # The answering worker took the rollback's table, and a restart would start from it.
    rig.cont(1)
    assert rig.tables()[0]["weights"] == {"1.0.0": 100}
    assert rig.desired()["weights"] == {"1.0.0": 100}
    assert rig.desired()["loaded"] == ["1.0.0", "1.1.0"]  # not unloaded yet
    (entry,) = run.unfinished_rollbacks()

    # Once the worker answers again, the journaled rollback is finished where it stopped.
    resumed = executor.Executor(rig.target, _plan(), run, hooks, policy=FAST)
    assert resumed.finish_rollbacks() == {MODEL: executor.Outcome.ABORTED}
    assert not run.unfinished_rollbacks()
    for table in rig.tables():
        assert table["weights"] == {"1.0.0": 100}
    assert rig.loaded() == [{"1.0.0"}, {"1.0.0"}]
    assert rollback_.Rollback.from_entry(entry).steps == _rollback().steps


def _half_traffic(canary: str) -> t.Action:
    """The plan's step that sends half of the traffic to `canary`."""
    return t.Action(
        id=f"{MODEL}/08-set_traffic-50",
        address=f"traffic.{MODEL}",
        kind=t.ActionKind.SET_TRAFFIC,
        symbol=t.ChangeSymbol.UPDATE,
        after={"weights": {"1.0.0": 50, canary: 50}, "shadow": None},
    )


def test_the_executor_retries_an_action_until_a_late_worker_confirms(rig: Rig) -> None:
    action = _half_traffic("1.1.0")
    plan = _plan(action)
    run = rig.journal(plan)
    rig.stop(1)
    listener = Listener(at_first_retry=lambda: rig.cont(1))
    hooks = hooks_.Hooks([recorders.JournalHook(run), listener])
    result = executor.Executor(rig.target, plan, run, hooks, policy=FAST).execute(resumed=False)

    assert result.outcome is executor.Outcome.APPLIED
    assert len(listener.retries) == 1 and listener.retries[0].startswith(action.id)
    assert [table["weights"] for table in rig.tables()] == [{"1.0.0": 50, "1.1.0": 50}] * 2
    assert rig.desired()["weights"] == {"1.0.0": 50, "1.1.0": 50}


def test_a_worker_that_never_answers_fails_the_action_once_the_policy_is_spent(
    rig: Rig,
) -> None:
    action = _half_traffic("1.1.0")
    plan = _plan(action)
    run = rig.journal(plan)
    silent = rig.runtime.worker_admin_urls()[1]
    rig.stop(1)
    listener = Listener()
    hooks = hooks_.Hooks([recorders.JournalHook(run), listener])
    with pytest.raises(errors.MlopsError) as info:
        executor.Executor(rig.target, plan, run, hooks, policy=FAST).execute(resumed=False)
    assert len(listener.retries) == FAST.attempts - 1
    assert f"{silent} did not answer" in info.value.message
    assert "re-run the same apply to resume" in info.value.message
    # Not confirmed everywhere, so not the table a restart starts from.
    assert rig.desired()["weights"] == {"1.0.0": 75, "1.1.0": 25}


def test_a_refusal_is_not_retried(rig: Rig) -> None:
    action = _half_traffic("9.9.9")
    plan = _plan(action)
    run = rig.journal(plan)
    listener = Listener()
    hooks = hooks_.Hooks([recorders.JournalHook(run), listener])
    with pytest.raises(errors.MlopsError, match=r"9\.9\.9"):
        executor.Executor(rig.target, plan, run, hooks, policy=FAST).execute(resumed=False)
    assert listener.retries == []
