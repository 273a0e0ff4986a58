"""Local autoscaling end to end (issue 14): a real apply of a spec with `serving.autoscaling`,
a load step that makes the supervisor add a worker, and a trickle after it during which the
worker is removed again; every request of both is answered 200.

Cool-downs are the spec's, made short here (1s up, 3s down); nothing is timed: the test waits
for each scale event (with a generous safety deadline) and checks what was recorded.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from mlops import loadgen
from tests.e2e.conftest import NAME, E2EWorkspace, models, stable_template, ws

pytestmark = pytest.mark.slow
__all__ = ["models", "stable_template", "ws"]  # the e2e fixtures this test uses

SCALING = (
    "replicas: {min: 1, max: 2}\n"
    "    autoscaling: {metric: queue_depth, target: 2, scale_up_cooldown: 1s, "
    "scale_down_cooldown: 3s}"
)
DEADLINE_S = 120.0  # a safety net for a broken build, not a measurement


@contextmanager
def clients(ws: E2EWorkspace, count: int, pause: float) -> Iterator[Counter[str]]:
    """`count` clients calling the model back to back (after `pause` seconds each); yields the
    outcomes seen (status codes, or the exception's name)."""
    seen: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    url = f"{ws.url()}/v2/models/{NAME}/infer"

    def run(seed: int) -> None:
        with httpx.Client(timeout=30.0) as client:
            i = 0
            while not stop.is_set():
                i += 1
                body = loadgen.body(30, 1, False, seed * 1_000_003 + i)
                try:
                    outcome = str(client.post(url, content=body).status_code)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                with lock:
                    seen[outcome] += 1
                if pause:
                    stop.wait(pause)

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(count)]
    for thread in threads:
        thread.start()
    try:
        yield seen
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)


def wait_for(ws: E2EWorkspace, what: str, check: Any) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        scaling = ws.status().get("engine_scaling") or {}
        if check(scaling):
            return dict(scaling)
        assert time.monotonic() < deadline, f"no {what}: {scaling}"
        time.sleep(0.5)


def serving_workers(ws: E2EWorkspace) -> set[str]:
    return {url.removeprefix("http://") for url in ws.admin_urls(serving=True)}


def autoscaled(scaling: dict[str, Any], before: int, after: int) -> bool:
    return any(
        e.get("by") == "autoscale" and (e.get("from"), e.get("to")) == (before, after)
        for e in scaling.get("events", [])
    )


def test_local_autoscaling_adds_a_worker_under_a_load_step_and_removes_it_after(
    ws: E2EWorkspace,
) -> None:
    path = ws.spec("1.0.0")
    text = path.read_text()
    assert "replicas: {min: 2, max: 2}" in text
    path.write_text(text.replace("replicas: {min: 2, max: 2}", SCALING))
    plan = ws.mlops("plan", "specs/")
    assert "autoscaling 1..2 on queue_depth 2 per worker (cool-down 1s up, 3s down)" in (
        plan.output
    ), plan.output
    ws.mlops("apply", "--auto-approve", "specs/")
    scaling = wait_for(ws, "policy", lambda s: s.get("autoscaling") and s.get("replicas") == 1)
    assert scaling["autoscaling"]["min"] == 1 and scaling["autoscaling"]["max"] == 2

    with clients(ws, count=8, pause=0.0) as step:
        up = wait_for(ws, "scale-up", lambda s: autoscaled(s, 1, 2))
        # The event is recorded when the worker is started; it announces itself once it has
        # loaded every version and listens on the data port (a busy machine takes seconds).
        deadline = time.monotonic() + DEADLINE_S
        while len(serving_workers(ws)) < 2:
            assert time.monotonic() < deadline, (serving_workers(ws), step)
            time.sleep(0.1)
        # The new worker serves: requests keep being answered after it joined.
        answered = step["200"]
        deadline = time.monotonic() + DEADLINE_S
        while step["200"] < answered + 200:
            assert time.monotonic() < deadline, step
            time.sleep(0.1)
    assert up["replicas"] == 2
    event = next(e for e in up["events"] if e["by"] == "autoscale")
    assert (
        "requests in flight per worker > target 2" in event["reason"] or "CPU" in event["reason"]
    ), event
    workers = serving_workers(ws)
    assert len(workers) == 2, workers
    # Prometheus (file_sd) follows the workers the supervisor added (it rewrites the file
    # within a sampling period of the new worker announcing itself).
    targets_file = ws.root / ".mlops" / "engine" / "scrape-targets.json"
    deadline = time.monotonic() + DEADLINE_S
    while {t for g in json.loads(targets_file.read_text()) for t in g["targets"]} != workers:
        assert time.monotonic() < deadline, (targets_file.read_text(), workers)
        time.sleep(0.1)

    with clients(ws, count=1, pause=0.05) as trickle:
        down = wait_for(ws, "scale-down", lambda s: autoscaled(s, 2, 1))
        answered = trickle["200"]
        deadline = time.monotonic() + DEADLINE_S
        while trickle["200"] < answered + 20:
            assert time.monotonic() < deadline, trickle
            time.sleep(0.1)
    assert down["replicas"] == 1
    assert "would stay under target 2" in down["events"][-1]["reason"], down

    # Zero failed requests, through the scale-up and the drain of the removed worker.
    assert set(step) == {"200"} and step["200"] > 0, step
    assert set(trickle) == {"200"} and trickle["200"] > 0, trickle
    status = ws.mlops("status").stdout
    assert "engine: 1 workers; autoscaling: 1..2 workers" in status, status
    assert "workers 1 -> 2 (autoscale)" in status and "workers 2 -> 1 (autoscale)" in status
