"""Connection limits of the engine's HTTP front door (mlops/serving/protocol.py), driven with
raw sockets against a real engine: oversized heads, slowloris heads and bodies, idle
connections, the connection cap, and JSON answers to malformed requests."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import gc
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import uvicorn

from mlops.serving import protocol
from mlops.serving.app import Engine
from mlops.serving.config import ServeConfig
from mlops.serving.worker import bind
from tests.serving.conftest import free_port, infer_body

HOST = "127.0.0.1"
WAIT = 20.0  # socket timeout: far above every limit used here, so only a hang trips it
LIVE = b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n"


class LimitedEngine:
    """The engine on a kernel-given loopback port with the worker's protocol, in a thread."""

    def __init__(self, config: ServeConfig) -> None:
        self.port = free_port()
        self.config = dataclasses.replace(config, port=self.port)
        self.engine = Engine(self.config)
        sock = bind(HOST, self.port, True)
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.engine,
                http=protocol.configure(self.config),
                ws="none",
                lifespan="on",
                access_log=False,
                log_level="error",
            )
        )
        self._thread = threading.Thread(target=self._run, args=(sock,), daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 60
        while not (self.server.started and self.engine.repository.ready()):
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("engine did not become ready")
            time.sleep(0.01)

    def _run(self, sock: socket.socket) -> None:
        import uvloop

        uvloop.new_event_loop().run_until_complete(self.server.serve(sockets=[sock]))

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)


@pytest.fixture(scope="module")
def limited(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimitedEngine]:
    config = ServeConfig(
        repository=repo,
        state_dir=tmp_path_factory.mktemp("state"),
        max_body_bytes=1 << 20,
        head_timeout_s=1.0,
        body_timeout_s=1.0,
        keepalive_timeout_s=1.0,
        max_connections=64,
    )
    server = LimitedEngine(config)
    yield server
    server.stop()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=WAIT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


@dataclasses.dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers["content-type"] == "application/json"
        return json.loads(self.body)


def read_answer(sock: socket.socket) -> Answer:
    return parse_answer(sock.makefile("rb"))


def parse_answer(stream: BinaryIO) -> Answer:
    """One HTTP/1.1 response with a Content-Length body."""
    status_line = stream.readline()
    assert status_line, "connection closed without an answer"
    headers = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = stream.read(int(headers["content-length"]))
    return Answer(int(status_line.split()[1]), headers, body)


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed (end of stream or reset), reading anything left."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def exchange(port: int, raw: bytes) -> Answer:
    with connect(port) as sock:
        sock.sendall(raw)
        return read_answer(sock)


def head_of_size(size: int) -> bytes:
    """A GET whose head (request line, headers, blank line) is exactly `size` bytes."""
    fixed = LIVE + b"x-pad: " + b"\r\n\r\n"
    return LIVE + b"x-pad: " + b"a" * (size - len(fixed)) + b"\r\n\r\n"


def post_infer(body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"POST /v2/models/clf/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        + extra
        + b"content-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
    )


# -- head size and header count


def test_head_at_the_limit_is_served_one_byte_more_is_431(limited: LimitedEngine) -> None:
    limit = limited.config.max_head_bytes
    assert exchange(limited.port, head_of_size(limit)).status == 200
    answer = exchange(limited.port, head_of_size(limit + 1))
    assert answer.status == 431
    assert answer.headers["connection"] == "close"
    assert f"{limit} bytes" in answer.json()["error"]


def test_a_huge_header_is_refused_after_its_first_bytes(limited: LimitedEngine) -> None:
    """48 MiB of header value: refused at once, the worker never accumulates it."""
    with connect(limited.port) as sock:
        sender = threading.Thread(target=_send_ignoring_errors, args=(sock, 48 << 20))
        sender.start()
        answer = read_answer(sock)
        assert answer.status == 431
        assert closed_by_server(sock)
        sender.join(WAIT)
    assert exchange(limited.port, LIVE + b"\r\n").status == 200


def _send_ignoring_errors(sock: socket.socket, size: int) -> None:
    piece = b"a" * (1 << 20)
    try:
        sock.sendall(LIVE + b"x-huge: ")
        for _ in range(size // len(piece)):
            sock.sendall(piece)
    except OSError:
        pass  # the server closed: that is the point


def test_a_head_split_across_reads_is_counted_whole(limited: LimitedEngine) -> None:
    limit = limited.config.max_head_bytes
    raw = head_of_size(limit + 1)
    with connect(limited.port) as sock:
        for start in range(0, len(raw), 1000):
            sock.sendall(raw[start : start + 1000])
            time.sleep(0.001)
        assert read_answer(sock).status == 431


@pytest.mark.parametrize("count,status", [(100, 200), (101, 431)])
def test_header_count_limit(limited: LimitedEngine, count: int, status: int) -> None:
    headers = b"".join(b"x-h%d: 1\r\n" % i for i in range(count - 1))  # + host
    answer = exchange(limited.port, LIVE + headers + b"\r\n")
    assert answer.status == status
    if status == 431:
        assert "100 header fields" in answer.json()["error"]


def test_pipelined_requests_are_all_served(limited: LimitedEngine) -> None:
    body = json.dumps(infer_body()).encode()
    one = post_infer(body) + body
    with connect(limited.port) as sock:
        sock.sendall(one * 3 + LIVE + b"\r\n")
        stream = sock.makefile("rb")
        statuses = [parse_answer(stream).status for _ in range(4)]
    assert statuses == [200, 200, 200, 200]


# -- time limits


def test_slowloris_head_is_answered_408_and_closed(limited: LimitedEngine) -> None:
    with connect(limited.port) as sock:
        sock.sendall(LIVE)
        answer = None
        for _ in range(200):  # one header line every 0.1 s: never completes on its own
            try:
                sock.sendall(b"x-slow: 1\r\n")
            except OSError:
                break
            time.sleep(0.1)
            if _readable(sock):
                answer = read_answer(sock)
                break
        assert answer is not None, "the slow head was never cut off"
        assert answer.status == 408
        assert "request head" in answer.json()["error"]
        assert closed_by_server(sock)


def _readable(sock: socket.socket) -> bool:
    import select

    return bool(select.select([sock], [], [], 0)[0])


def test_stalled_body_is_answered_408(limited: LimitedEngine) -> None:
    body = json.dumps(infer_body()).encode()
    with connect(limited.port) as sock:
        sock.sendall(post_infer(body) + body[:10])  # and then nothing
        answer = read_answer(sock)
        assert answer.status == 408
        assert "body stalled" in answer.json()["error"]
        assert closed_by_server(sock)


def test_a_slow_body_that_keeps_arriving_is_served(limited: LimitedEngine) -> None:
    """The body limit is on pauses, not on the whole body: 5 pauses of 0.3 x the limit."""
    body = json.dumps(infer_body()).encode()
    pause = limited.config.body_timeout_s * 0.3
    with connect(limited.port) as sock:
        sock.sendall(post_infer(body))
        fifth = len(body) // 5 + 1
        for start in range(0, len(body), fifth):
            time.sleep(pause)
            sock.sendall(body[start : start + fifth])
        assert read_answer(sock).status == 200


def test_a_connection_that_never_sends_is_closed(limited: LimitedEngine) -> None:
    with connect(limited.port) as sock:
        assert closed_by_server(sock)


def test_an_idle_keep_alive_connection_is_closed(limited: LimitedEngine) -> None:
    with connect(limited.port) as sock:
        sock.sendall(LIVE + b"\r\n")
        assert read_answer(sock).status == 200
        assert closed_by_server(sock)


def test_blank_lines_do_not_keep_a_connection_open(limited: LimitedEngine) -> None:
    """CRLFs between requests are allowed, but they count as the start of a head."""
    with connect(limited.port) as sock:
        closed = False
        for _ in range(200):
            try:
                sock.sendall(b"\r\n")
            except OSError:
                closed = True
                break
            time.sleep(0.1)
            if _readable(sock):
                closed = True
                break
        assert closed, "blank lines kept the connection open"


# -- the connection cap


def test_connection_cap_answers_503_and_frees_up(
    repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    server = LimitedEngine(
        ServeConfig(repository=repo, state_dir=tmp_path_factory.mktemp("state"), max_connections=4)
    )
    try:
        held = [connect(server.port) for _ in range(4)]
        for sock in held:  # each one is accepted and counted
            sock.sendall(LIVE + b"\r\n")
            assert read_answer(sock).status == 200
        with connect(server.port) as extra:
            extra.sendall(LIVE + b"\r\n")
            answer = read_answer(extra)
            assert answer.status == 503
            assert answer.headers["retry-after"] == "1"
            assert "too many connections" in answer.json()["error"]
            assert closed_by_server(extra)
        held.pop().close()
        deadline = time.monotonic() + WAIT
        while True:  # the server sees the close a moment later
            answer = exchange(server.port, LIVE + b"\r\n")
            if answer.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert answer.status == 200
        for sock in held:
            sock.close()
    finally:
        server.stop()


def test_connection_cap_fits_the_file_descriptor_limit() -> None:
    """With a hard limit of 300 descriptors, a cap of 10000 would fail accept() for everyone."""
    code = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))\n"
        "from mlops.serving import protocol\n"
        "from mlops.serving.config import ServeConfig\n"
        "cls = protocol.configure(ServeConfig(max_connections=10000))\n"
        "print(cls.limits.max_connections, resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == [str(300 - protocol.FD_RESERVE), "300"]


def test_soft_fd_limit_is_raised_to_the_hard_limit() -> None:
    code = (
        "import resource\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (min(512, hard), hard))\n"
        "from mlops.serving import protocol\n"
        "print(protocol.raise_fd_limit() == resource.getrlimit(resource.RLIMIT_NOFILE)[0]"
        " == hard)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "True"


def test_non_positive_limits_are_refused() -> None:
    from mlops import errors

    with pytest.raises(errors.UsageError, match="head_timeout_s must be positive"):
        protocol.configure(ServeConfig(head_timeout_s=0))


# -- garbage collection under connection churn


class _Holder:
    pass


def _largest_young_generation(pace: bool) -> int:
    """FIFO churn as thousands of connections make it (old objects die as new ones arrive)."""

    async def churn() -> int:
        if pace:
            protocol.pace_gc(asyncio.get_running_loop())
        alive = collections.deque([_Holder() for _ in range(5)] for _ in range(20000))
        gc.collect()
        largest = 0
        for _ in range(50):
            for _ in range(1000):
                alive.append([_Holder() for _ in range(5)])
                alive.popleft()
            largest = max(largest, len(gc.get_objects(0)))
            await asyncio.sleep(protocol.GC_PACE_S / 2)
        return largest

    return asyncio.run(churn())


def test_the_young_generation_stays_small_under_churn() -> None:
    # Without pacing, CPython 3.11 lets it grow to about 120,000 objects here.
    assert _largest_young_generation(pace=True) < 50_000


def test_the_start_up_heap_is_frozen_and_full_collections_are_rare() -> None:
    code = (
        "import gc\n"
        "from mlops.serving import protocol\n"
        "protocol.tune_gc()\n"
        "print(gc.get_freeze_count() > 10000, gc.get_threshold()[2])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == ["True", str(protocol.FULL_GC_THRESHOLD)]


# -- malformed requests answer JSON (finding 16)


@pytest.mark.parametrize(
    "raw,reason",
    [
        (b"POST /v2/health/live HTTP/1.1\r\ncontent-length: abc\r\n\r\n", "content-length"),
        (
            b"POST /v2/health/live HTTP/1.1\r\ncontent-length: 5\r\n"
            b"transfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            "transfer-encoding",
        ),
        (
            b"POST /v2/health/live HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            "chunk",
        ),
        (b"GET /v2/health/live HTTP/1.1\r\nbad header\r\n\r\n", "header"),
        (b"\x16\x03\x01 not http\r\n\r\n", ""),
    ],
    ids=["bad-content-length", "cl-and-te", "bad-chunk", "bad-header", "not-http"],
)
def test_malformed_requests_get_a_json_400(limited: LimitedEngine, raw: bytes, reason: str) -> None:
    with connect(limited.port) as sock:
        sock.sendall(raw)
        answer = read_answer(sock)
        assert answer.status == 400
        error = answer.json()["error"]
        assert error.startswith("invalid HTTP request")
        assert reason in error.lower()
        assert "\n" not in error
        assert closed_by_server(sock)


def test_upgrade_requests_are_served_as_plain_http(limited: LimitedEngine) -> None:
    with connect(limited.port) as sock:
        sock.sendall(LIVE + b"connection: upgrade\r\nupgrade: websocket\r\n\r\n")
        assert read_answer(sock).status == 200
        assert closed_by_server(sock)


# -- the worker process uses all of this


def serving(state: Path) -> bool:
    try:
        return bool(json.loads(state.read_text()).get("serving"))
    except (OSError, ValueError):
        return False


@pytest.mark.slow
def test_the_worker_enforces_the_limits(repo: Path, tmp_path: Path) -> None:
    port = free_port()
    config = ServeConfig(
        repository=repo,
        port=port,
        admin_port=free_port(),
        state_dir=tmp_path,
        load_all=False,
        head_timeout_s=1.0,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlops.serving.worker", config.to_json().decode(), "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        # The worker announces its admin address first (serving: false) and says serving: true
        # once it listens on the data port.
        while not serving(tmp_path / "worker-0.json"):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.05)
        assert exchange(port, head_of_size(16 << 10)).status == 200
        assert exchange(port, head_of_size((16 << 10) + 1)).status == 431
        bad = exchange(port, b"POST / HTTP/1.1\r\ncontent-length: x\r\n\r\n")
        assert bad.status == 400 and "error" in bad.json()
        with connect(port) as sock:
            sock.sendall(LIVE)
            assert read_answer(sock).status == 408
    finally:
        proc.terminate()
        proc.wait(timeout=30)
