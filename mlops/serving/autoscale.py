"""Autoscaling of the local engine's workers by load, run inside the supervisor.

The policy comes from the versions the controller loaded: each staged `settings.json` may
carry `autoscaling` (the spec's `serving.autoscaling` with its `replicas` range; see
mlops/spec/engine.py). Every worker serves every model, so the engine's policy is the
tightest of them: the highest `min`, the lowest `max` (never below that min), the lowest
`target` and the longest cool-downs. Without such a version nothing is scaled here.

Twice a second the supervisor reads each worker's load from its admin address
(`/v2/engine/load`: inference requests received and not answered yet, which includes those
waiting for a batch slot) and the worker's own CPU time (the engine's utilisation, a core per
worker at most, read from the process table: nothing on the request path). Over a window of
`WINDOW_S`, with `TOLERANCE` either side of the target (hysteresis):

- a worker is added (as many as the load needs, up to `max`) when the requests per worker, or
  the CPU per worker, are above target by more than the tolerance and `scale_up_cooldown` has
  passed since the last change;
- one worker is removed when one fewer would still be under target by more than the tolerance,
  and that has held, with no change, for `scale_down_cooldown`.

Adding and removing use the supervisor's live scaling (a new worker joins the port once it
serves every version; a removed one drains first), so no request is lost either way. Every
change, and why, is appended to `STATE_DIR/scale-events.jsonl` (the last `MAX_EVENTS` are kept);
the count running is written to `STATE_DIR/replicas.json`, where the controller reads it.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from mlops import fsio
from mlops.serving import desired
from mlops.spec import engine as engine_settings

log = logging.getLogger("mlops.serving")

EVENTS_FILE = "scale-events.jsonl"
TARGETS_FILE = "scrape-targets.json"  # Prometheus file_sd of the workers' admin addresses
POLICY_FILE = "autoscale.json"  # the policy in effect, for `mlops status` (written here)
MAX_EVENTS = 200
MAX_SETTINGS_BYTES = 1 << 20
SAMPLE_S = 0.5
WINDOW_S = 5.0
TOLERANCE = 0.1
CPU_TARGET = 0.8  # cores per worker: a worker's event loop is one thread
POLICY_REFRESH_S = 5.0


@dataclass(frozen=True)
class Policy:
    min: int
    max: int
    target: float  # requests in flight per worker
    scale_up_cooldown: float
    scale_down_cooldown: float
    cpu_target: float = CPU_TARGET
    models: tuple[str, ...] = ()

    def describe(self) -> str:
        return (
            f"{self.min}..{self.max} workers, {self.target:g} requests in flight per worker "
            f"(or {self.cpu_target:g} CPU), +/-{TOLERANCE:.0%}; cool-down "
            f"{self.scale_up_cooldown:g}s up, {self.scale_down_cooldown:g}s down"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "min": self.min,
            "max": self.max,
            "target": self.target,
            "cpu_target": self.cpu_target,
            "tolerance": TOLERANCE,
            "scale_up_cooldown": self.scale_up_cooldown,
            "scale_down_cooldown": self.scale_down_cooldown,
            "models": list(self.models),
            "text": self.describe(),
        }


def combine(policies: Mapping[str, engine_settings.EngineAutoscaling]) -> Policy | None:
    """The engine's policy from each model's (None when no model asks for autoscaling on
    queue depth: `gpu_utilization` cannot be measured here and is left out)."""
    usable = {m: p for m, p in policies.items() if p.metric == "queue_depth"}
    if not usable:
        return None
    low = max(p.min for p in usable.values())
    high = max(low, min(p.max for p in usable.values()))
    return Policy(
        min=low,
        max=high,
        target=min(p.target for p in usable.values()),
        scale_up_cooldown=max(p.scale_up_cooldown for p in usable.values()),
        scale_down_cooldown=max(p.scale_down_cooldown for p in usable.values()),
        models=tuple(sorted(usable)),
    )


def read_policy(state_dir: Path, repository: Path | None) -> Policy | None:
    """The policy of the versions in the controller's desired state (staged settings)."""
    if repository is None:
        return None
    try:
        wanted = desired.read(state_dir / desired.FILE)
    except Exception as exc:  # a damaged file: the workers report it; do not scale on it
        log.error("autoscaling off: %s", exc)
        return None
    if wanted is None:
        return None
    found: dict[str, engine_settings.EngineAutoscaling] = {}
    for name, version in wanted.loaded():
        path = repository / name / version / "settings.json"
        try:
            with path.open("rb") as handle:
                raw = json.loads(handle.read(MAX_SETTINGS_BYTES))
            section = raw.get("autoscaling") if isinstance(raw, dict) else None
            if section is None:
                continue
            policy = engine_settings.EngineAutoscaling.model_validate(section)
        except (OSError, ValueError, pydantic.ValidationError) as exc:
            log.error("autoscaling: ignoring %s: %s", path, str(exc).splitlines()[0][:200])
            continue
        # Of a model's versions (stable and canary), the tightest.
        found[name] = combine_one(found.get(name), policy)
    return combine(found)


def combine_one(
    a: engine_settings.EngineAutoscaling | None, b: engine_settings.EngineAutoscaling
) -> engine_settings.EngineAutoscaling:
    if a is None:
        return b
    if a.metric != b.metric:
        return a if a.metric == "queue_depth" else b
    return engine_settings.EngineAutoscaling(
        metric=a.metric,
        target=min(a.target, b.target),
        min=max(a.min, b.min),
        max=max(max(a.min, b.min), min(a.max, b.max)),
        scale_up_cooldown=max(a.scale_up_cooldown, b.scale_up_cooldown),
        scale_down_cooldown=max(a.scale_down_cooldown, b.scale_down_cooldown),
    )


@dataclass(frozen=True)
class Load:
    """One reading of the engine: totals over the workers that answered."""

    at: float
    inflight: float  # requests received and not answered, all workers
    cpu: float | None  # cores used per worker (mean), None before two readings
    # Every worker serves what the controller's desired state says (no load, unload or
    # routing change under way): only then may a worker be added, or it could start from a
    # desired state the controller is about to change and miss that change.
    settled: bool = True


@dataclass(frozen=True)
class Change:
    count: int
    reason: str


class Autoscaler:
    """The decision (pure: readings and times in, a count out)."""

    def __init__(self, policy: Policy, now: float) -> None:
        self.policy = policy
        self.last_change = now
        self._window: deque[Load] = deque()
        self._low_since: float | None = None

    def changed(self, now: float) -> None:
        """The count changed (here or by a request): judge only what follows."""
        self.last_change = now
        self._window.clear()
        self._low_since = None

    def decide(self, count: int, load: Load) -> Change | None:
        p, now = self.policy, load.at
        if count < p.min:
            return Change(p.min, f"below the policy's minimum of {p.min} workers")
        if count > p.max:
            return Change(p.max, f"above the policy's maximum of {p.max} workers")
        self._window.append(load)
        while self._window and now - self._window[0].at > WINDOW_S:
            self._window.popleft()
        if now - max(self.last_change, self._window[0].at) < WINDOW_S * 0.8:
            return None  # not a full window since the last change yet
        per_worker = _mean(x.inflight for x in self._window) / count
        cpus = [x.cpu for x in self._window if x.cpu is not None]
        cpu = _mean(cpus) if cpus else 0.0
        busy = per_worker > p.target * (1 + TOLERANCE)
        hot = cpu > p.cpu_target * (1 + TOLERANCE)
        if (busy or hot) and count < p.max:
            self._low_since = None
            if now - self.last_change < p.scale_up_cooldown or not load.settled:
                return None
            wanted = max(
                math.ceil(per_worker * count / p.target), math.ceil(cpu * count / p.cpu_target)
            )
            wanted = min(p.max, max(count + 1, wanted))
            why = (
                f"{per_worker:.3g} requests in flight per worker > target {p.target:g}"
                if busy
                else f"{cpu:.2f} CPU per worker > {p.cpu_target:g}"
            )
            return Change(wanted, f"{why} (+{TOLERANCE:.0%}) over {WINDOW_S:g}s")
        fewer = count - 1
        idle = fewer >= p.min and (
            per_worker * count / fewer < p.target * (1 - TOLERANCE)
            and cpu * count / fewer < p.cpu_target * (1 - TOLERANCE)
        )
        if not idle:
            self._low_since = None
            return None
        if self._low_since is None:
            self._low_since = now
        quiet = min(now - self._low_since, now - self.last_change)
        if quiet < p.scale_down_cooldown or not load.settled:
            return None
        return Change(
            fewer,
            f"{per_worker:.3g} requests in flight per worker, {cpu:.2f} CPU: {fewer} "
            f"would stay under target {p.target:g} (-{TOLERANCE:.0%}) "
            f"for {p.scale_down_cooldown:g}s",
        )


def _view(
    loaded: list[Any],
    generations: Mapping[str, Any],
    wanted: tuple[list[str], dict[str, int]] | None,
) -> str:
    """A comparable summary of what a worker serves: the versions loaded and the routing
    generations of the models the desired state routes (all of them without one)."""
    models = generations if wanted is None else {m: generations.get(m) for m in wanted[1]}
    return json.dumps([sorted(map(str, loaded)), sorted(models.items())], default=str)


def _mean(values: Iterable[float]) -> float:
    items = list(values)
    return sum(items) / len(items) if items else 0.0


class EventLog:
    """`STATE_DIR/scale-events.jsonl`: one JSON object a line, the newest last, bounded."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / EVENTS_FILE

    def append(self, before: int, after: int, by: str, reason: str) -> None:
        event = {
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "from": before,
            "to": after,
            "by": by,
            "reason": reason[:500],
        }
        lines = self.read_lines()[-(MAX_EVENTS - 1) :]
        lines.append(json.dumps(event, sort_keys=True))
        try:
            fsio.atomic_write(self.path, "\n".join(lines) + "\n")
        except OSError as exc:
            log.error("cannot record the scale event in %s: %s", self.path, exc)

    def read_lines(self) -> list[str]:
        try:
            with self.path.open("rb") as handle:
                text = handle.read(MAX_EVENTS * 1024).decode("utf-8", "replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if line.startswith("{")]


def write_policy(state_dir: Path, policy: Policy | None) -> None:
    """The policy in effect (or none), for `mlops status`."""
    path = state_dir / POLICY_FILE
    try:
        if policy is None:
            path.unlink(missing_ok=True)
        else:
            fsio.atomic_write(path, json.dumps(policy.to_dict(), sort_keys=True))
    except OSError as exc:
        log.error("cannot write %s: %s", path, exc)


class Controller:
    """What the supervisor runs every tick: read the policy and the workers' load, decide,
    and return the count to scale to (None: keep). The caller scales and calls `scaled`."""

    def __init__(self, state_dir: Path, repository: Path | None, token: bytes | None) -> None:
        self.state_dir, self.repository, self.token = state_dir, repository, token
        self.events = EventLog(state_dir)
        self.policy: Policy | None = None
        self._scaler: Autoscaler | None = None
        self._policy_read = -math.inf
        self._next_sample = 0.0
        self._cpu: dict[int, tuple[float, float]] = {}  # pid -> (cpu seconds, at)

    def tick(self, now: float, workers: Mapping[int, int]) -> Change | None:
        """`workers`: index -> pid of the workers the pool keeps (not the draining ones)."""
        if now - self._policy_read >= POLICY_REFRESH_S:
            self._refresh_policy(now)
        if now < self._next_sample:
            return None
        self._next_sample = now + SAMPLE_S
        self._sync_targets(workers)
        if self._scaler is None:
            return None
        reading = self._read(now, workers)
        if reading is None:
            return None
        return self._scaler.decide(len(workers), reading)

    def scaled(self, now: float, before: int, after: int, by: str, reason: str) -> None:
        if before != after:
            self.events.append(before, after, by, reason)
            log.warning("workers %d -> %d (%s): %s", before, after, by, reason)
        try:
            fsio.atomic_write(self.state_dir / "replicas.json", json.dumps({"replicas": after}))
        except OSError as exc:
            log.error("cannot record the worker count: %s", exc)
        if self._scaler is not None:
            self._scaler.changed(now)

    def restarted(self, workers: int, index: int, code: int) -> None:
        """Record that the supervisor restarted a worker that died (shown by `mlops status`
        even once the new worker is up)."""
        how = f"killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
        self.events.append(workers, workers, "restart", f"worker {index} {how}; restarted")

    def _refresh_policy(self, now: float) -> None:
        self._policy_read = now
        policy = read_policy(self.state_dir, self.repository)
        if policy == self.policy:
            return
        log.warning("autoscaling: %s", policy.describe() if policy else "off")
        self.policy = policy
        write_policy(self.state_dir, policy)
        if policy is None:
            self._scaler = None
        elif self._scaler is None:
            self._scaler = Autoscaler(policy, now)
        else:
            self._scaler.policy = policy

    def _read(self, now: float, workers: Mapping[int, int]) -> Load | None:
        import psutil

        wanted = self._desired()
        inflight, cpus = 0.0, []
        views: set[str] = set()
        for index, pid in workers.items():
            answer = self._load_of(index)
            if answer is None:
                return None  # a worker that does not answer now is judged at the next tick
            inflight += answer[0]
            views.add(_view(answer[1], answer[2], wanted))
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.Error:
                return None
            used = times.user + times.system
            before = self._cpu.get(pid)
            self._cpu[pid] = (used, now)
            if before is not None and now > before[1]:
                cpus.append((used - before[0]) / (now - before[1]))
        for gone in set(self._cpu) - set(workers.values()):
            del self._cpu[gone]
        cpu = _mean(cpus) if len(cpus) == len(workers) else None
        if wanted is None:
            settled = len(views) == 1  # no controller: the workers agree among themselves
        else:
            settled = views == {_view(wanted[0], wanted[1], wanted)}
        return Load(now, inflight, cpu, settled)

    def _desired(self) -> tuple[list[str], dict[str, int]] | None:
        """The controller's desired state: versions loaded, and the routing generation of each
        model it routes. None without one; an unreadable one never matches a worker."""
        try:
            state = desired.read(self.state_dir / desired.FILE)
        except Exception:
            return ["?"], {}
        if state is None:
            return None
        loaded = [f"{n}@{v}" for n, v in state.loaded()]
        routed = {n: m.generation for n, m in state.models.items() if m.weights or m.shadow}
        return loaded, routed

    def _sync_targets(self, workers: Mapping[int, int]) -> None:
        """Keep STATE_DIR/scrape-targets.json (Prometheus file_sd) on the announced workers,
        in the format the controller writes (providers/metrics/prometheus.py)."""
        urls = []
        for index in sorted(workers):
            try:
                with (self.state_dir / f"worker-{index}.json").open("rb") as handle:
                    doc = json.loads(handle.read(4096))
                if doc.get("pid") == workers[index]:
                    urls.append(str(doc["admin_url"]))
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue
        groups = [
            {"targets": [url.removeprefix("http://")], "labels": {"replica": str(i)}}
            for i, url in enumerate(urls)
        ]
        text = json.dumps(groups)
        path = self.state_dir / TARGETS_FILE
        try:
            if path.read_text() == text:
                return
        except OSError:
            pass
        try:
            fsio.atomic_write(path, text)
        except OSError as exc:
            log.error("cannot write %s: %s", path, exc)

    def _load_of(self, index: int) -> tuple[float, list[Any], dict[str, Any]] | None:
        import http.client
        from urllib.parse import urlsplit

        try:
            with (self.state_dir / f"worker-{index}.json").open("rb") as handle:
                doc = json.loads(handle.read(4096))
            url = urlsplit(str(doc["admin_url"]))
            host, port = url.hostname or "127.0.0.1", int(url.port or 0)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if doc.get("serving") is not True:
            return None  # joining (or restarting): not a full reading of the engine yet
        headers = {} if self.token is None else {"authorization": f"Bearer {self.token.decode()}"}
        connection = http.client.HTTPConnection(host, port, timeout=0.5)
        try:
            connection.request("GET", "/v2/engine/load", headers=headers)
            response = connection.getresponse()
            body = json.loads(response.read(4096)) if response.status == 200 else None
        except (OSError, ValueError, http.client.HTTPException):
            return None
        finally:
            connection.close()
        if not isinstance(body, dict):
            return None
        value, loaded, generations = (
            body.get("inflight"),
            body.get("loaded"),
            body.get("generations"),
        )
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return None
        if not isinstance(loaded, list) or not isinstance(generations, dict):
            return None
        return float(min(value, 10_000_000)), loaded[:10_000], generations


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
