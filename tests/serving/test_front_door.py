"""HTTP semantics of the engine's own connection protocol (mlops/serving/protocol.py), which
replaced uvicorn's: driven with raw sockets and httpx against a real uvicorn server on
loopback, with a small ASGI application that exposes what the protocol handed it.

The limits (sizes, timeouts, the connection cap, JSON errors) are tested in
test_http_limits.py; the engine's own endpoints everywhere else.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from mlops.serving import protocol
from mlops.serving.config import ServeConfig
from mlops.serving.worker import bind
from tests.serving.conftest import free_port
from tests.serving.test_http_limits import (
    HOST,
    closed_by_server,
    connect,
    parse_answer,
    read_answer,
)

Message = dict[str, Any]


class Probe:
    """An ASGI application recording what it was given and answering by path."""

    def __init__(self) -> None:
        self.disconnects = 0

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/fail":
            raise RuntimeError("boom")
        if path == "/partial":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"part", "more_body": True})
            raise RuntimeError("cut short")
        if path == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for piece in (b"one,", b"two,", b"three"):
                await asyncio.sleep(0.01)
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        if path == "/early":  # answers without reading the body (as a 413 or a 503 does)
            body = b'{"error": "too large"}'
            headers = [(b"content-type", b"application/json"), (b"content-length", b"22")]
            await send({"type": "http.response.start", "status": 413, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        if path == "/slow":
            await asyncio.sleep(0.3)
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnects += 1
                return
            size += len(message["body"])
            more = message["more_body"]
        doc = {
            "method": scope["method"],
            "path": path,
            "raw_path": scope["raw_path"].decode(),
            "query": scope["query_string"].decode(),
            "http_version": scope["http_version"],
            "body_bytes": size,
            "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
        }
        body = json.dumps(doc).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class FrontDoor:
    def __init__(self) -> None:
        self.port = free_port()
        self.app = Probe()
        self.http_class = protocol.configure(ServeConfig(port=self.port))
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, http=self.http_class, lifespan="off", log_level="critical")
        )
        sock = bind(HOST, self.port, True)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, args=(sock,), daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self._thread.is_alive()
            time.sleep(0.01)

    def _run(self, sock: socket.socket) -> None:
        import uvloop

        self.loop = uvloop.new_event_loop()
        self.loop.run_until_complete(self.server.serve(sockets=[sock]))

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)


@pytest.fixture(scope="module")
def door() -> Iterator[FrontDoor]:
    server = FrontDoor()
    yield server
    server.stop()


def _get(path: bytes, extra: bytes = b"", version: bytes = b"HTTP/1.1") -> bytes:
    return b"GET " + path + b" " + version + b"\r\nhost: x\r\n" + extra + b"\r\n"


def test_path_query_and_percent_encoding(door: FrontDoor) -> None:
    with connect(door.port) as sock:
        sock.sendall(_get(b"/a%20b/c?x=1&y=%20#frag"))
        doc = read_answer(sock).json()
    assert doc["path"] == "/a b/c"
    assert doc["raw_path"] == "/a%20b/c"
    assert doc["query"] == "x=1&y=%20"
    assert doc["headers"]["host"] == "x"


def test_http_10_is_answered_and_closed(door: FrontDoor) -> None:
    with connect(door.port) as sock:
        sock.sendall(_get(b"/", version=b"HTTP/1.0"))
        answer = read_answer(sock)
        assert answer.status == 200 and answer.json()["http_version"] == "1.0"
        assert answer.headers["connection"] == "close"
        assert closed_by_server(sock)


def test_connection_close_from_the_client_is_honoured(door: FrontDoor) -> None:
    with connect(door.port) as sock:
        sock.sendall(_get(b"/", b"connection: close\r\n"))
        assert read_answer(sock).headers["connection"] == "close"
        assert closed_by_server(sock)


def test_keep_alive_serves_many_requests_on_one_connection(door: FrontDoor) -> None:
    with connect(door.port) as sock:
        stream = sock.makefile("rb")
        for i in range(50):
            sock.sendall(_get(b"/n%d" % i))
            answer = parse_answer(stream)
            assert answer.json()["path"] == f"/n{i}"
            assert "connection" not in answer.headers


def test_head_gets_the_headers_without_a_body(door: FrontDoor) -> None:
    with connect(door.port) as sock:
        sock.sendall(b"HEAD /h HTTP/1.1\r\nhost: x\r\n\r\n")
        stream = sock.makefile("rb")
        status = stream.readline()
        assert status.startswith(b"HTTP/1.1 200")
        headers = {}
        while (line := stream.readline()) != b"\r\n":
            name, _, value = line.decode().partition(":")
            headers[name.lower()] = value.strip()
        assert int(headers["content-length"]) > 0
        # Nothing follows the head: the next answer starts right after it.
        sock.sendall(_get(b"/after"))
        assert parse_answer(stream).json()["path"] == "/after"


def test_expect_100_continue_is_answered_before_the_body(door: FrontDoor) -> None:
    body = b"x" * 1000
    with connect(door.port) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n"
            b"content-length: %d\r\n\r\n" % len(body)
        )
        stream = sock.makefile("rb")
        assert stream.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert stream.readline() == b"\r\n"
        sock.sendall(body)
        assert parse_answer(stream).json()["body_bytes"] == 1000


def test_chunked_and_large_request_bodies_arrive_whole(door: FrontDoor) -> None:
    with connect(door.port) as sock:
        sock.sendall(
            b"POST /c HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        assert read_answer(sock).json()["body_bytes"] == 11
    big = b"y" * (3 << 20)  # far beyond the read high-water mark: reading pauses and resumes
    answer = httpx.post(f"http://{HOST}:{door.port}/big", content=big, timeout=30)
    assert answer.json()["body_bytes"] == len(big)


def test_a_streamed_response_is_sent_chunked(door: FrontDoor) -> None:
    answer = httpx.get(f"http://{HOST}:{door.port}/stream", timeout=30)
    assert answer.status_code == 200
    assert answer.headers["transfer-encoding"] == "chunked"
    assert answer.content == b"one,two,three"


def test_pipelined_answers_keep_the_order_of_requests(door: FrontDoor) -> None:
    """The first request waits (a task), the second would finish at once: answers in order."""
    with connect(door.port) as sock:
        sock.sendall(_get(b"/slow") + _get(b"/fast") + _get(b"/last"))
        stream = sock.makefile("rb")
        paths = [parse_answer(stream).json()["path"] for _ in range(3)]
    assert paths == ["/slow", "/fast", "/last"]


def test_an_application_failure_is_a_json_500_and_the_server_lives(door: FrontDoor) -> None:
    with connect(door.port) as sock:
        sock.sendall(_get(b"/fail"))
        answer = read_answer(sock)
        assert answer.status == 500
        assert answer.json() == {"error": "internal error"}
        assert closed_by_server(sock)
    with connect(door.port) as sock:  # a response cut short closes its connection
        sock.sendall(_get(b"/partial"))
        assert closed_by_server(sock)
    with connect(door.port) as sock:
        sock.sendall(_get(b"/ok"))
        assert read_answer(sock).status == 200


def test_a_client_gone_mid_body_is_a_disconnect_for_the_application(door: FrontDoor) -> None:
    before = door.app.disconnects
    sock = connect(door.port)
    sock.sendall(b"POST /gone HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n" + b"z" * 10)
    time.sleep(0.2)
    sock.close()
    deadline = time.monotonic() + 10
    while door.app.disconnects == before:
        assert time.monotonic() < deadline, "the application never saw the disconnect"
        time.sleep(0.02)


def test_retiring_closes_each_connection_after_its_next_answer(door: FrontDoor) -> None:
    with connect(door.port) as sock:
        stream = sock.makefile("rb")
        sock.sendall(_get(b"/before"))
        assert "connection" not in parse_answer(stream).headers
        protocol.retire(door.http_class)
        try:
            sock.sendall(_get(b"/after"))
            assert parse_answer(stream).headers["connection"] == "close"
            assert closed_by_server(sock)
        finally:
            door.http_class.gate.retiring = False


def test_an_answer_before_the_body_lets_the_client_finish_sending(door: FrontDoor) -> None:
    """A client that sends its whole body before reading (as most do) gets the early answer;
    the rest of the body is read and dropped, and the connection serves the next request."""
    size = 8 << 20  # far beyond socket buffers and the read high-water mark
    with connect(door.port) as sock:
        sock.sendall(b"POST /early HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % size)
        piece = b"z" * (1 << 20)
        for _ in range(size // len(piece)):
            sock.sendall(piece)  # blocks for good if the server stopped reading
        stream = sock.makefile("rb")
        answer = parse_answer(stream)
        assert answer.status == 413
        sock.sendall(_get(b"/next"))
        assert parse_answer(stream).json()["path"] == "/next"


def test_an_early_answer_to_expect_100_continue_closes_the_connection(door: FrontDoor) -> None:
    with connect(door.port) as sock:
        sock.sendall(
            b"POST /early HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n"
            b"content-length: 1000\r\n\r\n"
        )
        answer = read_answer(sock)  # the final answer, never 100 Continue
        assert answer.status == 413
        assert answer.headers["connection"] == "close"
        assert closed_by_server(sock)
