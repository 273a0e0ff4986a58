"""`mlops watch` against a real engine fed a live stream, a real registry and, for webhooks,
a real HTTP server on loopback."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.drift import conftest, live
from tests.support import Runner

pytestmark = pytest.mark.slow

# Appends one line per run: how many times the hook ran, across rounds and restarts.
COUNTING_HOOK = """\
import os
with open("hook-runs.txt", "a") as out:
    out.write(os.environ["MLOPS_DRIFT_MODEL"] + " " + os.environ["MLOPS_DRIFT_FEATURES"] + "\\n")
"""
ONE_ROUND = ("watch", "--once", "--no-outside-changes", "--format", "json")


def events(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def kinds(out: str) -> list[str]:
    return [e["kind"] for e in events(out)]


def hook_runs(root: Path) -> list[str]:
    path = root / "hook-runs.txt"
    return path.read_text().splitlines() if path.exists() else []


def counting_workspace(tmp_path: Path) -> Path:
    root = live.workspace(tmp_path / "ws")
    (root / "hook.py").write_text(COUNTING_HOOK)
    return root


def test_three_sigma_runs_the_hook_once_across_rounds_restart_and_sigterm(
    tmp_path: Path, run: Runner
) -> None:
    root = counting_workspace(tmp_path)
    with live.serving(root) as rt:
        live.stream(rt, {0: 3.0}, seed=11)
        first = run("-C", str(root), *ONE_ROUND)
        assert first.code == 0, first.err
        assert kinds(first.out) == ["started", "drift-started", "hook-ok", "stopped"]
        started = events(first.out)[1]
        assert started["model"] == conftest.NAME and started["version"] == conftest.VERSION
        assert started["details"]["input[0]"]["sigma"] > 2.0
        assert hook_runs(root) == [f"{conftest.NAME} input[0]"]
        # The round gave the engine the baseline: its gauge shows the drift.
        assert all(w[("sigma", "input[0]")] > 2.0 for w in live.gauges(rt))
        for _ in range(2):
            again = run("-C", str(root), *ONE_ROUND)
            assert kinds(again.out) == ["started", "drift-continues", "stopped"]
        state = json.loads((root / ".mlops" / "watch.json").read_text())
        episode = state["episodes"][f"{conftest.NAME}@{conftest.VERSION}"]
        assert episode["notified"] is True and episode["features"] == ["input[0]"]

        # A restarted watch (a real process) knows the episode: no second run; SIGTERM ends it.
        with watch_process(root) as (process, lines):
            seen = [next_event(lines)["kind"] for _ in range(3)]
            assert seen == ["started", "drift-continues", "drift-continues"]
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 0
            rest = [json.loads(line)["kind"] for line in drain(lines)]
            assert rest[-1] == "stopped"
            assert "hook-ok" not in rest
        assert hook_runs(root) == [f"{conftest.NAME} input[0]"]
        assert not (root / ".mlops" / "watch.pid").exists()

        # Unshifted traffic dilutes the reservoir below the threshold: the episode closes.
        live.stream(rt, {}, seed=14, requests=1000)
        cleared = run("-C", str(root), *ONE_ROUND)
        assert kinds(cleared.out) == ["started", "drift-cleared", "stopped"]
        assert json.loads((root / ".mlops" / "watch.json").read_text())["episodes"] == {}
        assert hook_runs(root) == [f"{conftest.NAME} input[0]"]


def test_one_sigma_shift_runs_no_hook(tmp_path: Path, run: Runner) -> None:
    root = counting_workspace(tmp_path)
    with live.serving(root) as rt:
        live.stream(rt, {0: 1.0}, seed=12)
        for _ in range(2):
            result = run("-C", str(root), *ONE_ROUND)
            assert result.code == 0, result.err
            assert kinds(result.out) == ["started", "no-drift", "stopped"]
    assert hook_runs(root) == []
    state = json.loads((root / ".mlops" / "watch.json").read_text())
    assert state["episodes"] == {}


class _Receiver(BaseHTTPRequestHandler):
    """Answers 500 to the first POST and 200 to the rest; keeps every body."""

    bodies: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        length = int(self.headers["content-length"])
        self.bodies.append(json.loads(self.rfile.read(length)))
        status = 500 if len(self.bodies) == 1 else 200
        self.send_response(status)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    bodies: list[dict[str, Any]] = []
    handler = type("Receiver", (_Receiver,), {"bodies": bodies})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/drift", bodies
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_is_retried_after_a_failure_and_posted_once(tmp_path: Path, run: Runner) -> None:
    with receiver() as (url, bodies):
        root = live.workspace(tmp_path / "ws", webhook=url)
        with live.serving(root) as rt:
            live.stream(rt, {0: 3.0}, seed=13)
            first = run("-C", str(root), *ONE_ROUND)
            assert first.code == 0, first.err
            got = events(first.out)
            assert [e["kind"] for e in got] == [
                "started",
                "drift-started",
                "hook-attempt",
                "hook-attempt",
                "hook-ok",
                "stopped",
            ]
            assert got[2]["message"] == f"attempt 1: POST {url}: HTTP 500"
            assert got[3]["message"] == f"attempt 2: POST {url}: HTTP 200"
            assert got[4]["details"]["attempts"] == 2 and got[4]["details"]["status"] == 200
            assert len(bodies) == 2 and bodies[0] == bodies[1]
            body = bodies[1]
            assert body["event"] == "drift"
            assert (body["model"], body["version"]) == (conftest.NAME, conftest.VERSION)
            assert body["features"] == ["input[0]"]
            stats = {s["name"]: s for s in body["statistics"]}
            assert len(stats) == conftest.FEATURES
            assert stats["input[0]"]["drifted"] and stats["input[0]"]["mean_shift"] > 2.0
            second = run("-C", str(root), *ONE_ROUND)
            assert kinds(second.out) == ["started", "drift-continues", "stopped"]
            assert len(bodies) == 2


@contextmanager
def watch_process(root: Path) -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str | None]]]:
    argv = [sys.executable, "-m", "mlops", "-C", str(root), "watch", "--interval", "1s"]
    argv += ["--no-outside-changes", "--format", "json"]
    env = {k: v for k, v in os.environ.items() if k != "MLOPS_DEBUG"}
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        yield process, lines
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def next_event(lines: queue.Queue[str | None]) -> dict[str, Any]:
    line = lines.get(timeout=120)
    assert line is not None, "mlops watch exited"
    event: dict[str, Any] = json.loads(line)
    return event


def drain(lines: queue.Queue[str | None]) -> list[str]:
    found = []
    while (line := lines.get(timeout=30)) is not None:
        found.append(line)
    return found
