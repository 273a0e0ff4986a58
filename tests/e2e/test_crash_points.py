"""Random crash points (issue 15): `mlops apply` SIGKILLed at randomly chosen moments through a
full canary rollout and through a rollback, and the engine killed at random moments; each
time the run is re-run until it converges, and the invariants are checked.

A crash point is (journal entries written by this invocation, extra delay): the apply
subprocess is killed once its run's journal has grown by that many entries, after that delay
(0 entries: during interpreter start, plan checks, lock). Points are drawn from a seeded
random generator; the seed is printed (`-s` shows it; a failure message repeats it) and
`MLOPS_CRASH_SEED=N` replays it. `MLOPS_CRASH_POINTS` sets how many apply kills to make (CI:
20; `make soak`: 200); engine kills are a tenth of that, at least 2.

Invariants, checked against a real engine and a real MLflow sqlite registry:
- the rollout converges (the last re-run exits 0, or 3 for the rollback) and the next plan
  has no changes;
- no registry version is registered twice (MLflow's own rows, counted in its database);
- the canary's weight, as every worker's routing table showed it while a watcher polled,
  was never above the plan's (only planned weights, or 0, were ever observed);
- a rollback the journal shows begun is always finished (every `rollback` entry has its
  `rollback_done`), and the rejected version ends with no traffic and not loaded;
- journal, registry and engine agree at the end (run outcome, stable alias, every worker's
  table and the status document).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import NAME, E2EWorkspace, Load

pytestmark = pytest.mark.slow

POINTS = int(os.environ.get("MLOPS_CRASH_POINTS", "20"))
# Short holds: a full canary is ~4 s of holds, so 20 kills fit in a few minutes of CI.
CANARY_STEPS = ((25, 1.0), (50, 1.0), (100, 0.0))
ROLLBACK_STEPS = ((25, 20.0), (100, 0.0))
# Only errors gate the canaries here: latency on a busy 2-core CI machine is not what is tested.
ERRORS_ONLY = "[{metric: error_rate, max: 0.02}]"
MAX_RERUNS = 40  # per scenario: a run that never converges fails instead of looping
RUN_TIMEOUT_S = 180.0


def _seed() -> int:
    raw = os.environ.get("MLOPS_CRASH_SEED", "")
    if raw:
        if not raw.isdigit() or len(raw) > 18:
            raise ValueError(f"MLOPS_CRASH_SEED must be a decimal integer, not {raw[:40]!r}")
        return int(raw)
    return random.SystemRandom().randrange(10**9)


class Seeded(random.Random):
    """A random generator that remembers its seed, to name it in every failure."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.seed_value = seed


@pytest.fixture
def rng() -> Seeded:
    seed = _seed()
    print(f"\ncrash points: MLOPS_CRASH_SEED={seed} MLOPS_CRASH_POINTS={POINTS}")
    return Seeded(seed)


def seed_of(rng: random.Random) -> str:
    return f"(replay with MLOPS_CRASH_SEED={getattr(rng, 'seed_value', '?')})"


Table = tuple[tuple[str, int], ...]


class TableWatch:
    """Every routing table any worker showed for NAME, polled fast (zero weights dropped)."""

    def __init__(self, ws: E2EWorkspace, period: float = 0.02) -> None:
        self.ws, self.period = ws, period
        self.seen: set[Table] = set()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TableWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        with httpx.Client(timeout=1.0) as client:
            while not self._stop.wait(self.period):
                # Re-read each round: the token and the workers change when the engine restarts.
                headers = self.ws.admin_headers()
                for url in self.ws.admin_urls():
                    try:
                        reply = client.get(f"{url}/v2/routing", headers=headers)
                        table = reply.raise_for_status().json()
                    except (httpx.HTTPError, ValueError):
                        continue
                    weights = (table.get("models", {}).get(NAME) or {}).get("weights", {})
                    self.samples += 1
                    self.seen.add(tuple(sorted((v, int(w)) for v, w in weights.items() if w)))

    def check(self, allowed: set[Table], rng: random.Random) -> None:
        """Every table observed since the last check is one the plan has; then forget them."""
        seen, self.seen = self.seen, set()
        extra = seen - allowed
        assert not extra, f"tables off the plan: {sorted(extra)}; plan {allowed} {seed_of(rng)}"


def canary_tables(stable: str, canary: str, weights: tuple[int, ...]) -> set[Table]:
    tables: set[Table] = {((stable, 100),)}
    for weight in weights:
        rows = {canary: weight, stable: 100 - weight}
        tables.add(tuple(sorted((v, w) for v, w in rows.items() if w)))
    return tables


@dataclass
class Tally:
    apply_kills: int = 0
    engine_kills: int = 0
    reruns: int = 0
    points: list[str] = field(default_factory=list)


def journal_events(ws: E2EWorkspace) -> list[dict[str, Any]]:
    directory = ws.root / ".mlops" / "journal"
    try:
        run_id = json.loads((directory / "current.json").read_text())["run_id"]
        lines = (directory / f"{run_id}.jsonl").read_text().splitlines()
    except (OSError, ValueError, KeyError):
        return []
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            break  # the line being written
    return events


def journal_size(ws: E2EWorkspace) -> tuple[str, int]:
    directory = ws.root / ".mlops" / "journal"
    try:
        run_id = str(json.loads((directory / "current.json").read_text())["run_id"])
    except (OSError, ValueError, KeyError):
        return "", 0
    return run_id, len(journal_events(ws))


def release_stale_lock(ws: E2EWorkspace) -> None:
    """A killed apply leaves its lock (by design only `mlops unlock ID` releases it)."""
    path = ws.root / ".mlops" / "lock.json"
    try:
        lock_id = str(json.loads(path.read_text())["id"])
    except FileNotFoundError:
        return
    ws.mlops("unlock", lock_id)


def kill_at(
    ws: E2EWorkspace,
    process: subprocess.Popen[str],
    entries: int,
    delay: float,
    victim: str = "apply",
) -> bool:
    """SIGKILL `victim` (the apply process, or the whole engine) once this invocation has
    added `entries` journal entries, `delay` s later. False: the apply finished first."""
    start_run, start_len = journal_size(ws)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        run, size = journal_size(ws)
        grown = size if run != start_run else size - start_len
        if grown >= entries:
            end = time.monotonic() + delay
            while time.monotonic() < end and process.poll() is None:
                time.sleep(0.002)
            if process.poll() is not None:
                return False
            if victim == "apply":
                process.send_signal(signal.SIGKILL)
                process.wait(30)
                return True
            return kill_engine(ws)
        if process.poll() is not None:
            return False
        time.sleep(0.002)
    process.kill()
    raise AssertionError(f"apply neither reached journal entry +{entries} nor finished")


def kill_engine(ws: E2EWorkspace) -> bool:
    """The whole engine (supervisor and workers) at once, as an OOM kill or a crash would."""
    try:
        pid = int(json.loads((ws.root / ".mlops" / "engine.json").read_text())["pid"])
        os.killpg(pid, signal.SIGKILL)
    except (OSError, ValueError, KeyError):
        return False  # no engine running at that moment
    return True


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    out, _ = process.communicate(timeout=RUN_TIMEOUT_S)
    return process.returncode, out


def crash_apply_until_converged(
    ws: E2EWorkspace,
    plan: str,
    rng: random.Random,
    tally: Tally,
    budget: int,
    max_entries: int,
) -> tuple[int, str]:
    """Kill `apply PLAN` at `budget` random points, re-running after each; then let it run to
    the end and return its exit code and output."""
    kills = 0
    for _ in range(MAX_RERUNS):
        release_stale_lock(ws)
        process = ws.start("apply", plan)
        tally.reruns += 1
        if kills >= budget:
            return finish(process)
        entries, delay = rng.randint(0, max_entries), rng.uniform(0.0, 0.4)
        if kill_at(ws, process, entries, delay):
            kills += 1
            tally.apply_kills += 1
            tally.points.append(f"apply +{entries} entries +{delay:.3f}s")
            continue
        code, out = finish(process)
        if code in (0, 3):
            return code, out  # finished before the chosen point
        raise AssertionError(f"apply exited {code} {seed_of(rng)}\n{out}")
    raise AssertionError(f"no convergence after {MAX_RERUNS} re-runs {seed_of(rng)}")


# -- invariants -------------------------------------------------------------------------------


def registry_rows(ws: E2EWorkspace) -> list[str]:
    """The semver tag of every MLflow model version of NAME, read from MLflow's own tables."""
    with sqlite3.connect(ws.root / ".mlops" / "mlflow.db") as db:
        rows = db.execute(
            "SELECT value FROM model_version_tags WHERE name = ? AND key = 'mlops.semver'",
            (NAME,),
        ).fetchall()
    return [str(row[0]) for row in rows]


def assert_agree(ws: E2EWorkspace, rng: random.Random, stable: str, outcome: str) -> None:
    semvers = registry_rows(ws)
    assert len(semvers) == len(set(semvers)), f"registered twice: {semvers} {seed_of(rng)}"
    model = ws.model()
    assert model["stable"] == stable and model["canary"] is None, (model, seed_of(rng))
    assert model["weights"] == {stable: 100}, (model, seed_of(rng))
    assert model["replicas_alive"] == model["replicas"] > 0, model
    for url in ws.admin_urls():
        table = httpx.get(f"{url}/v2/routing", headers=ws.admin_headers(), timeout=5).json()
        assert table["models"][NAME]["weights"] == {stable: 100}, (url, table)
    events = journal_events(ws)
    ends = [e for e in events if e["event"] == "run_end"]
    assert ends and ends[-1]["data"]["outcome"] == outcome, (ends, seed_of(rng))
    begun = [e for e in events if e["event"] == "rollback"]
    closed = [e for e in events if e["event"] == "rollback_done"]
    assert len(closed) >= len(begun), f"a begun rollback did not finish {seed_of(rng)}"
    registry = json.loads(ws.mlops("registry", "show", NAME, "--format", "json").stdout)
    assert stable in json.dumps(registry)
    ws.mlops("plan", "specs/", "--detailed-exitcode")  # 0: no changes left


# -- scenarios ----------------------------------------------------------------------------------

PLANNED = tuple(w for w, _ in CANARY_STEPS)


def canary_spec(ws: E2EWorkspace, version: str) -> None:
    ws.spec(version, steps=CANARY_STEPS, interval=0.5, min_requests=1, gates=ERRORS_ONLY)


def other(version: str) -> str:
    return "1.0.0" if version == "1.1.0" else "1.1.0"


def test_apply_killed_through_canaries_converges(ws: E2EWorkspace, rng: random.Random) -> None:
    """Half the kills (at most 5 per rollout) through full canaries: 1.0.0 -> 1.1.0, then
    back to 1.0.0 as a new rollout, and so on."""
    tally = Tally()
    ws.deploy_v1()
    budget = POINTS // 2
    stable = "1.0.0"
    with TableWatch(ws) as watch:
        while tally.apply_kills < budget:
            version = other(stable)
            per_round = min(5, budget - tally.apply_kills)
            canary_spec(ws, version)
            plan = ws.plan()
            watch.check(canary_tables(stable, version, ()), rng)
            with Load(ws, rate=50.0):
                code, out = crash_apply_until_converged(ws, plan, rng, tally, per_round, 24)
            assert code == 0, f"{out} {seed_of(rng)}"
            watch.check(canary_tables(stable, version, PLANNED), rng)
            assert_agree(ws, rng, version, "applied")
            stable = version
    assert watch.samples > 0
    print(f"apply kills {tally.apply_kills}, invocations {tally.reruns}: {tally.points}")


def test_apply_killed_through_rollbacks_finishes_them(ws: E2EWorkspace, rng: random.Random) -> None:
    """The other half (at most 5 per rollout): an erroring canary fails its gate at 25% under
    poisoned load and is rolled back and rejected; kills land before, in and after the
    rollback."""
    tally = Tally()
    ws.deploy_v1()
    budget = POINTS - POINTS // 2
    stable = "1.0.0"
    with TableWatch(ws) as watch:
        minor = 3
        while tally.apply_kills < budget:
            semver = f"1.{minor}.0"
            minor += 1
            per_round = min(5, budget - tally.apply_kills)
            ws.spec(
                semver,
                artifact=f"{NAME}-1.1.0-erroring.onnx",
                accuracy_of="1.1.0",
                steps=ROLLBACK_STEPS,
                interval=0.5,
                gates="[{metric: error_rate, max: 0.01}]",
            )
            plan = ws.plan()
            with Load(ws, rate=100.0, poison_every=10):
                code, out = crash_apply_until_converged(ws, plan, rng, tally, per_round, 16)
            assert code == 3, f"{out} {seed_of(rng)}"
            watch.check(canary_tables(stable, semver, (25,)), rng)
            row = next(r for r in ws.model()["versions"] if r["semver"] == semver)
            assert row["status"] == "rejected" and not row["loaded"], (row, seed_of(rng))
            # Back to the stable spec: nothing left to change.
            canary_spec(ws, stable)
            assert_agree(ws, rng, stable, "rolled_back")
    assert watch.samples > 0
    print(f"apply kills {tally.apply_kills}, invocations {tally.reruns}: {tally.points}")


def test_engine_killed_at_random_points_is_repaired(ws: E2EWorkspace, rng: random.Random) -> None:
    """The whole engine SIGKILLed at a random point of a canary; the apply stops (or rolls
    back: the metrics backend failed) and the next plan and apply repair it."""
    tally = Tally()
    ws.deploy_v1()
    stable = "1.0.0"
    kills = max(2, POINTS // 10)
    with TableWatch(ws) as watch:
        while tally.engine_kills < kills:
            version = other(stable)
            canary_spec(ws, version)
            plan = ws.plan()
            with Load(ws, rate=50.0):
                process = ws.start("apply", plan)
                entries, delay = rng.randint(0, 24), rng.uniform(0.0, 0.4)
                if kill_at(ws, process, entries, delay, victim="engine"):
                    tally.engine_kills += 1
                    tally.points.append(f"engine +{entries} entries +{delay:.3f}s")
                code, out = finish(process)
            # 3: rolled back (the metrics backend failed); 4: paused (the hold ended before
            # `consecutive_errors` failed rounds); 1: a step failed (the engine was gone).
            assert code in (0, 1, 3, 4), f"apply exited {code} {seed_of(rng)}\n{out}"
            # Repair: plan and apply again until the spec is in effect.
            outputs = [out]
            for _ in range(5):
                release_stale_lock(ws)
                with Load(ws, rate=50.0):
                    result = ws.mlops("apply", "--auto-approve", "specs/", expect=None)
                outputs.append(result.output)
                if result.code == 0 and ws.model()["stable"] == version:
                    break
                assert result.code in (1, 3, 4), f"{result.output} {seed_of(rng)}"
            else:
                raise AssertionError(
                    f"not repaired after 5 applies {seed_of(rng)}: {tally.points[-1:]}, "
                    f"status {ws.model()}\n" + "\n---\n".join(outputs)
                )
            watch.check(canary_tables(stable, version, PLANNED), rng)
            assert_agree(ws, rng, version, "applied")
            stable = version
    print(f"engine kills {tally.engine_kills}: {tally.points}")
