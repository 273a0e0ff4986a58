"""The executor against the real local target (the engine, MLflow on sqlite), driven the way
a user drives it: `mlops plan` / `mlops apply` (in process) and, for crashes, `mlops.api.apply`
in a child process that is SIGKILLed inside the journal write of one action: right after its
intent is on disk, or after the action took effect and before its outcome is (issue 10).

- one model's failure is contained: the other model of the plan completes;
- a delete unloads every version of the removed model and drops its routes;
- an in-place config update reloads with the new settings and keeps traffic;
- resume after a crash in every action kind: the dead run's lock is released as its error
  says, the re-run converges (the next plan is empty), registers nothing twice, never routes
  more than the plan says, does the interrupted action once and loses no client request.

Assertions read the CLI's exit codes and output, the journal, `mlops status`, the engine's
own endpoints and the registry's database; never the payloads' internals.
"""

from __future__ import annotations

import contextlib
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlops import api
from mlops.apply import journal
from mlops.plan import types as t
from tests.apply.conftest import BROKEN, NAME, Walk, accuracy, spec
from tests.e2e.conftest import E2EWorkspace, Load, RoutingWatch
from tests.support import cli_runner

pytestmark = pytest.mark.slow

K = t.ActionKind
OTHER = "scorer-b"
# Loose gates (a busy machine's latency is noise); few requests suffice in a 1 s window.
GATES = "[{metric: error_rate, max: 0.02}]"
MIN_REQUESTS = 5
BATCHING = "{max_batch_size: 16, max_queue_delay_ms: 2}"
PLAN = "plans/next.json"


@dataclass(frozen=True)
class Said:
    """What one `mlops` command run in process ended with and printed (stdout and stderr)."""

    code: int
    output: str


@dataclass
class Rig:
    """The serving workspace of one test and the ways to drive and observe it."""

    walk: Walk
    mlops: Callable[..., Said]

    @property
    def root(self) -> Path:
        return self.walk.root

    def spec(self, version: str, *, name: str = NAME, accuracy_of: str = "", **kw: Any) -> None:
        value = accuracy(self.walk.trained, accuracy_of or version)
        text = spec(version, name=name, value=value, gates=GATES, min_requests=MIN_REQUESTS, **kw)
        self.walk.write(name, text)

    def plan(self, *flags: str) -> t.Plan:
        made = self.mlops("plan", str(self.root / "specs"), "-o", str(self.root / PLAN), *flags)
        assert made.code == 0, made.output
        return api.show(self.root / PLAN, workspace=self.root)

    def apply(self, expect: int = 0) -> Said:
        done = self.mlops("apply", str(self.root / PLAN))
        assert done.code == expect, done.output
        return done

    def status(self, model: str = NAME) -> dict[str, Any]:
        document: dict[str, Any] = api.status(workspace=self.root)["models"][model]
        return document

    def weights(self, model: str) -> dict[str, int]:
        found = api.status(workspace=self.root)["models"].get(model)
        return dict(found["weights"]) if found else {}

    def entries(self) -> list[journal.Entry]:
        run = journal.Journal.current(self.root / ".mlops")
        assert run is not None
        return run.entries

    def e2e(self) -> E2EWorkspace:
        """The same workspace seen by the end-to-end helpers (load, routing watch)."""
        return E2EWorkspace(root=self.root, port=self.walk.port, models=self.walk.trained)

    def load(self) -> Load:
        return Load(self.e2e(), rate=60.0, duration=120.0)

    def engine(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.walk.port}{path}", timeout=5.0)

    def registry_versions(self, model: str) -> tuple[int, int]:
        """(versions in the registry's database, distinct versions the registry reports)."""
        with contextlib.closing(sqlite3.connect(self.root / ".mlops" / "mlflow.db")) as db:
            (rows,) = db.execute(
                "SELECT COUNT(*) FROM model_versions "
                "WHERE name = ? AND current_stage != 'Deleted_Internal'",
                (model,),
            ).fetchone()
        return int(rows), len(self.status(model)["versions"])


@pytest.fixture
def rig(walk: Walk, capsys: pytest.CaptureFixture[str]) -> Rig:
    invoke = cli_runner(capsys)

    def mlops(*args: str) -> Said:
        done = invoke("-C", str(walk.root), *args)
        return Said(done.code, done.out + done.err)

    return Rig(walk, mlops)


def no_failed_requests(load: Load) -> None:
    summary = load.summary
    assert summary is not None
    assert summary.sent > 0 and summary.failed == 0, summary.to_dict()


def of(plan: t.Plan, model: str) -> list[t.Action]:
    return [a for a in plan.actions if a.model == model]


def events(entries: list[journal.Entry], event: journal.Event) -> list[journal.Entry]:
    return [e for e in entries if e.event is event]


def deploy_other(rig: Rig, version: str = "1.0.0", **kw: Any) -> None:
    rig.spec(version, name=OTHER, **kw)
    rig.plan()
    rig.apply()


# -- containment, delete, in-place update -----------------------------------------------------


def test_a_failing_model_is_contained_and_the_other_completes(rig: Rig) -> None:
    # fraud-scorer's candidate fails its conformance test; scorer-b is a first deployment
    # whose steps come after fraud-scorer's in the plan.
    rig.spec(BROKEN, accuracy_of="1.1.0")
    rig.spec("1.1.0", name=OTHER)
    plan = rig.plan()
    assert plan.actions.index(of(plan, NAME)[-1]) < plan.actions.index(of(plan, OTHER)[0])

    with rig.load() as load:
        applied = rig.apply(expect=3)
    no_failed_requests(load)

    verdict = next(line for line in applied.output.splitlines() if "rolled back:" in line)
    assert NAME in verdict and "conformance failed" in verdict and OTHER not in verdict
    entries = rig.entries()
    stopped = {
        str(e.data["model"]): e.data["outcome"]
        for e in events(entries, journal.Event.MODEL_STOPPED)
    }
    assert stopped == {NAME: "rolled_back"}
    done = {e.action for e in events(entries, journal.Event.DONE)}
    assert {a.id for a in of(plan, OTHER)} <= done
    # fraud-scorer stopped at its conformance test: registered and verified, nothing after.
    checked = {a.id for a in of(plan, NAME) if a.kind in (K.REGISTER, K.VERIFY)}
    assert {a.id for a in of(plan, NAME)} & done == checked
    assert events(entries, journal.Event.RUN_END)[-1].data["outcome"] == "rolled_back"

    scorer = rig.status()
    assert scorer["weights"] == {"1.0.0": 100} and scorer["stable"] == "1.0.0"
    broken = next(r for r in scorer["versions"] if r["semver"] == BROKEN)
    assert broken["status"] == "rejected" and not broken["loaded"]
    other = rig.status(OTHER)
    assert other["weights"] == {"1.1.0": 100} and other["stable"] == "1.1.0"
    assert rig.engine(f"/v2/models/{OTHER}/ready").status_code == 200


def test_delete_unloads_every_version_and_drops_the_routes(rig: Rig) -> None:
    deploy_other(rig)
    # A rollout of scorer-b paused at 25% (no traffic reaches it, so its gate cannot decide):
    # two versions loaded and routed.
    rig.spec("1.1.0", name=OTHER)
    rig.plan()
    rig.apply(expect=4)
    assert rig.status(OTHER)["weights"] == {"1.0.0": 75, "1.1.0": 25}

    (rig.root / "specs" / f"{OTHER}.yaml").unlink()
    warned = rig.plan()
    assert warned.actions == []  # without --allow-delete, a removed spec deletes nothing
    plan = rig.plan("--allow-delete")
    assert [a.kind for a in plan.actions] == [K.DELETE]
    with rig.load() as load:
        rig.apply()
    no_failed_requests(load)

    gone = rig.status(OTHER)
    assert gone["weights"] == {}
    assert not any(row["loaded"] for row in gone["versions"])
    for url in rig.e2e().admin_urls():
        headers = rig.e2e().admin_headers()
        routing = httpx.get(f"{url}/v2/routing", headers=headers, timeout=5.0).json()
        assert OTHER not in routing["models"], routing
        index = httpx.post(f"{url}/v2/repository/index", json={"ready": True}, timeout=5.0)
        assert not [row for row in index.json() if row["name"] == OTHER]
    assert rig.engine(f"/v2/models/{OTHER}/ready").status_code != 200
    # The model left alone keeps serving as before; nothing is left to delete.
    assert rig.status()["weights"] == {"1.0.0": 100}
    assert rig.plan("--allow-delete").actions == []


def test_an_in_place_config_update_reloads_and_keeps_traffic(rig: Rig) -> None:
    before = rig.engine(f"/v2/models/{NAME}/versions/1.0.0").json()
    assert before["max_batch_size"] == 1
    rig.spec("1.0.0", batching=BATCHING)
    plan = rig.plan()
    assert [a.kind for a in plan.actions] == [K.UPDATE_CONFIG]

    with rig.load() as load:
        rig.apply()
        load.wait_answers(30)  # requests after the reload are answered too
    no_failed_requests(load)

    after = rig.engine(f"/v2/models/{NAME}/versions/1.0.0").json()
    assert after["max_batch_size"] == 16
    assert rig.status()["weights"] == {"1.0.0": 100}
    assert rig.plan().actions == []


# -- resume after a crash in each action kind -------------------------------------------------

# The child applies the saved plan and SIGKILLs itself inside the journal write of the chosen
# action: just after its intent is on disk (nothing done yet), or just before its outcome
# would be written (the action took effect, the journal does not say so).
_CRASHING_APPLY = """
import os, signal, sys
from mlops import api
from mlops.apply import journal

root, plan, victim, point = sys.argv[1:5]
append = journal.Journal.append

def dying(self, event, action=None, **data):
    if action == victim and event is journal.Event.DONE and point == "outcome":
        os.kill(os.getpid(), signal.SIGKILL)
    entry = append(self, event, action, **data)
    if action == victim and event is journal.Event.INTENT and point == "intent":
        os.kill(os.getpid(), signal.SIGKILL)
    return entry

journal.Journal.append = dying
api.apply(plan, workspace=root)
"""
OUTCOMES = (journal.Event.DONE, journal.Event.FAILED, journal.Event.SKIPPED)


# Each scenario writes the specs of one plan and returns the flags `mlops plan` needs.


def canary(rig: Rig) -> tuple[str, ...]:
    rig.spec("1.1.0")
    return ()


def config_update(rig: Rig) -> tuple[str, ...]:
    rig.spec("1.0.0", batching=BATCHING)
    return ()


def delete(rig: Rig) -> tuple[str, ...]:
    deploy_other(rig)
    (rig.root / "specs" / f"{OTHER}.yaml").unlink()
    return ("--allow-delete",)


def scale(rig: Rig) -> tuple[str, ...]:
    # A model that needs two engine workers where one runs: the engine scales first.
    rig.spec("1.0.0", name=OTHER, replicas=2)
    return ()


@dataclass(frozen=True)
class Crash:
    kind: K
    point: str  # "intent": before the action acts; "outcome": after it took effect
    scenario: Callable[[Rig], tuple[str, ...]] = canary
    occurrence: int = 1  # the n-th action of that kind in the plan

    @property
    def id(self) -> str:
        nth = f"#{self.occurrence}" if self.occurrence > 1 else ""
        return f"{self.kind.value}{nth}@{self.point}"


# Every kind at least once, at the point where a re-run could do harm (most often after the
# effect: the action is re-run on something already done); a few at both points.
CRASHES = [
    Crash(K.REGISTER, "outcome"),
    Crash(K.VERIFY, "outcome"),
    Crash(K.CONFORMANCE_TEST, "outcome"),
    Crash(K.LOAD, "outcome"),
    Crash(K.PROMOTE, "outcome"),  # the canary alias
    Crash(K.SET_TRAFFIC, "intent"),  # 25%
    Crash(K.SET_TRAFFIC, "outcome", occurrence=2),  # 100%
    Crash(K.CHECKPOINT_GATE, "intent"),
    Crash(K.PROMOTE, "outcome", occurrence=2),  # stable moves
    Crash(K.RETIRE, "outcome"),
    Crash(K.UPDATE_CONFIG, "outcome", config_update),
    Crash(K.DELETE, "outcome", delete),
    Crash(K.SCALE_ENGINE, "intent", scale),
    Crash(K.SCALE_ENGINE, "outcome", scale),
]


# The image steps need podman and an OCI registry: tests/images/test_image_crash.py.
IMAGE_KINDS = {K.BUILD_IMAGE, K.PUSH_IMAGE}


def test_every_action_kind_has_a_crash_case() -> None:
    assert {c.kind for c in CRASHES} == set(K) - IMAGE_KINDS


def crash_apply(rig: Rig, victim: str, point: str) -> None:
    """Apply the saved plan in a child process that dies at `victim` (see _CRASHING_APPLY)."""
    argv = [sys.executable, "-c", _CRASHING_APPLY, str(rig.root), str(rig.root / PLAN)]
    child = subprocess.run(
        [*argv, victim, point], cwd=rig.root, capture_output=True, text=True, timeout=240
    )
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr
    mine = [e.event for e in rig.entries() if e.action == victim]
    assert journal.Event.INTENT in mine and not set(mine) & set(OUTCOMES), mine


def resume(rig: Rig) -> None:
    """Re-run the same apply, as a person does after a crash: the dead run still holds the
    lock, which the error says how to release."""
    held = rig.apply(expect=1)
    assert "no longer running" in held.output, held.output
    match = re.search(r"mlops unlock (\w+)", held.output)
    assert match is not None, held.output
    assert rig.mlops("unlock", match.group(1)).code == 0
    resumed = rig.apply()
    assert "Resuming run" in resumed.output, resumed.output


def traffic_by_model(entries: list[journal.Entry]) -> dict[str, list[dict[str, int]]]:
    """The tables apply set per model, in order; setting the table in place again is no
    change (a resumed set_traffic whose effect the crash had already made)."""
    found: dict[str, list[dict[str, int]]] = {}
    for entry in events(entries, journal.Event.WEIGHT):
        tables = found.setdefault(str(entry.data["model"]), [])
        table = {str(v): int(w) for v, w in entry.data["weights"].items()}
        if not tables or tables[-1] != table:
            tables.append(table)
    return found


@pytest.mark.parametrize("crash", CRASHES, ids=lambda c: c.id)
def test_resume_after_a_crash_converges(rig: Rig, crash: Crash) -> None:
    flags = crash.scenario(rig)
    plan = rig.plan(*flags)
    victim = [a for a in plan.actions if a.kind is crash.kind][crash.occurrence - 1]
    models = sorted({a.model for a in plan.actions})
    watched = rig.weights(NAME)  # the routing watch follows fraud-scorer

    with rig.load() as load, RoutingWatch(rig.e2e()) as watch:
        crash_apply(rig, victim.id, crash.point)
        resume(rig)
        load.wait_answers(30)
    no_failed_requests(load)

    entries = rig.entries()
    intents = [e.action for e in events(entries, journal.Event.INTENT)]
    done = [str(e.action) for e in events(entries, journal.Event.DONE)]
    assert intents.count(victim.id) == 2  # the crashed attempt and the resumed one
    assert sorted(done) == sorted(a.id for a in plan.actions)  # each action done once
    assert not events(entries, journal.Event.FAILED)
    assert events(entries, journal.Event.RUN_END)[-1].data["outcome"] == "applied"

    # Never more traffic than the plan: each table set is one the plan shows, in its order.
    planned: dict[str, list[dict[str, int]]] = {m: [] for m in models}
    for action in plan.actions:
        if isinstance(action.after, t.TrafficPayload):
            planned[action.model].append(dict(action.after.weights))
        elif action.kind is K.DELETE:
            planned[action.model].append({})
    for model, tables in traffic_by_model(entries).items():
        assert tables == [w for w in planned[model] if w in tables], (model, tables, planned)
    ceiling: dict[str, int] = {}
    for table in [watched, *planned.get(NAME, [])]:
        for version, weight in table.items():
            ceiling[version] = max(ceiling.get(version, 0), weight)
    assert all(w <= ceiling.get(v, 0) for v, w in watch.max_weight.items()), watch.max_weight

    # Converged: nothing left to do, nothing registered twice.
    assert rig.plan(*flags).actions == []
    for model in models:
        rows, reported = rig.registry_versions(model)
        assert rows == reported, f"{model}: {rows} registry versions for {reported} semvers"
