"""Fault tests (issue 15): the end-to-end workspace of tests/e2e (real MLflow on sqlite, real
engine processes, the `mlops` CLI as a subprocess) with one fault injected from outside.

The fixtures are tests/e2e's own (one trained-model set and one stable 1.0.0 template per
session); the helpers here start the faults: a loopback HTTP server standing in for
Prometheus, a full tmpfs (the clock jump is made in test_clock.py itself).
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.e2e.conftest import models, stable_template, ws

__all__ = ["models", "stable_template", "ws"]


class FakePrometheus:
    """A real HTTP server on a kernel-chosen loopback port that answers every request with
    the body `answer()` returns (status 200, JSON content type): what a broken or empty
    Prometheus sends back."""

    def __init__(self, answer: Callable[[str], bytes], avoid: int) -> None:
        """`avoid`: the engine's port, chosen before but bound later (by apply): the kernel
        may hand that free port to this server, which would then take it from the engine."""
        outer = self
        self.answer = answer
        self.requests = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def _reply(self) -> None:
                length = min(int(self.headers.get("content-length") or 0), 1 << 20)
                self.rfile.read(length)
                outer.requests += 1
                body = outer.answer(self.path)
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _reply

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        while self.server.server_address[1] == avoid:
            taken = self.server  # kept bound until the next one has another port
            self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            taken.server_close()
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakePrometheus:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


@contextlib.contextmanager
def full_tmpfs(directory: Path, size_kib: int = 256) -> Iterator[Callable[[], None]]:
    """Mount a small tmpfs on `directory` (its files copied in first) and yield `fill`, which
    takes every free byte of it (any later write: ENOSPC). Unmounted, with the files copied
    back, at the end. Needs root (CI runs as root)."""
    directory.mkdir(parents=True, exist_ok=True)
    saved = directory.parent / (directory.name + ".saved")
    shutil.copytree(directory, saved)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(directory)],
        check=True,
        capture_output=True,
    )
    filler = directory / ".filler"

    def fill() -> None:
        with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 4096)

    try:
        for item in saved.iterdir():
            if item.is_file():
                shutil.copy2(item, directory / item.name)
        yield fill
    finally:
        filler.unlink(missing_ok=True)
        kept = directory.parent / (directory.name + ".kept")
        shutil.copytree(directory, kept)
        subprocess.run(["umount", str(directory)], check=True, capture_output=True)
        shutil.rmtree(directory)
        kept.rename(directory)
        shutil.rmtree(saved)


def free_disk(directory: Path) -> None:
    (directory / ".filler").unlink(missing_ok=True)
