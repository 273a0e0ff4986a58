"""The on_drift webhook POST against real HTTP servers on loopback (no engine needed)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mlops.drift import webhook


@contextmanager
def server(status: int, body: bytes) -> Iterator[tuple[str, list[int]]]:
    hits: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            hits.append(status)
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/drift", hits
    finally:
        httpd.shutdown()
        httpd.server_close()


def no_sleep(_: float) -> None:
    pass


def test_a_4xx_is_an_answer_not_retried() -> None:
    with server(400, b'{"error": "bad"}') as (url, hits):
        result = webhook.post(url, {"x": 1}, sleep=no_sleep)
    assert hits == [400]
    assert result.attempts == 1 and result.exit_code == 400
    assert result.error == "answered HTTP 400" and "bad" in result.output


def test_5xx_is_retried_until_the_attempts_are_used_up() -> None:
    lines: list[str] = []
    with server(503, b"busy") as (url, hits):
        result = webhook.post(
            url, {}, attempts=3, sleep=no_sleep, on_attempt=lambda n, line: lines.append(line)
        )
    assert hits == [503, 503, 503] and result.attempts == 3
    assert result.error == "failed after 3 attempt(s): HTTP 503"
    assert lines == [f"POST {url}: HTTP 503"] * 3


def test_a_refused_connection_is_retried_and_a_huge_answer_is_read_only_in_part() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        refused = webhook.post(f"http://127.0.0.1:{port}/x", {}, attempts=2, sleep=no_sleep)
    assert refused.attempts == 2 and refused.exit_code is None
    assert refused.error is not None and refused.error.startswith("failed after 2 attempt(s)")
    with server(200, b"x" * (8 << 20)) as (url, hits):
        ok = webhook.post(url, {}, sleep=no_sleep)
    assert ok.ok and hits == [200] and len(ok.output) == webhook.RESPONSE_LIMIT


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://x/y", "http://", "http://a b/"])
def test_the_spec_takes_only_http_urls(url: str) -> None:
    import pydantic

    from mlops.spec import models as spec

    with pytest.raises(pydantic.ValidationError):
        spec.OnDrift(webhook=url)
    with pytest.raises(pydantic.ValidationError, match="exactly one"):
        spec.OnDrift(command="make retrain", webhook="https://hooks.example.com/x")
