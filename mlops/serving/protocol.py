"""The engine's HTTP/1.1 front door: httptools driven directly on uvloop, with the limits a
front door needs.

uvicorn still runs the process (lifespan, signals, graceful shutdown, the listening sockets),
but each connection is this module's protocol rather than uvicorn's: measured side by side
(bench/engine.py, scenario 2), uvicorn's per-request machinery (a request/response cycle
object, an asyncio task per request, one write per ASGI message) cost about as much CPU as
the whole inference of a small model. Here a request is parsed by httptools, the application
(still an ASGI callable, so the engine and its tests do not change) is started at once and
usually finishes without ever suspending (the body is already in hand, the model runs
inline), and its response goes out in one write. Only an application that does suspend (a
batch, a large body, a thread) gets a task.

Per connection it enforces:

- the request head (request line + headers) at most `max_head_bytes`, `max_headers` fields
  (431); bytes are counted before they reach the parser, so an oversized head costs one read;
- the head complete within `head_timeout_s` of its first byte; a body that makes no progress
  for `body_timeout_s` (408). Time the application takes, or the engine not reading because
  the application has not asked for more body yet, never counts against the client;
- a connection with nothing in flight closed after `keepalive_timeout_s` of silence,
  including a new connection that never sends anything;
- at most `max_connections` open connections on the data port per worker: beyond, an
  immediate 503 and close (the admin port is exempt);
- every error the protocol itself answers (malformed request line, header, Content-Length,
  chunk, both Content-Length and Transfer-Encoding) is `{"error": "..."}` JSON, like the
  engine's own errors. After such an answer the connection is half-closed and the rest of
  the request is read and dropped for a moment, so that the client gets the answer rather
  than a reset.

HTTP semantics kept from uvicorn: pipelined requests answered in order (reading pauses while
one waits), `Expect: 100-continue` answered when the application first reads the body, body
reads paused beyond HIGH_WATER bytes not yet consumed, writes awaited when the transport's
buffer is full, `Connection: close` and HTTP/1.0 without keep-alive honoured, HEAD answered
without a body, a streamed response (no Content-Length) sent chunked, response header values
checked for control characters, and an application that fails answered with a JSON 500.
Upgrade requests are served as plain HTTP and the connection closes after the answer.
`retire()` (a worker's scale-down) makes every response of the data port's connections carry
`Connection: close` from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import http
import logging
import random
import re
import resource
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from dataclasses import dataclass
from itertools import chain
from typing import Any, ClassVar

import httptools
import orjson
from uvicorn.config import Config
from uvicorn.protocols.utils import get_local_addr, get_remote_addr
from uvicorn.server import ServerState

from mlops import errors
from mlops.serving.config import ServeConfig

log = logging.getLogger("mlops.serving")

# File descriptors kept out of the connection cap: listeners, model files, log, loader and
# inference threads' eventfds, admin connections.
FD_RESERVE = 256
# After an error answer, how long and how much of the rest of a request is read and dropped
# before closing (closing with unread data makes the kernel send a reset, which can destroy
# the answer before the client reads it).
LINGER_S = 2.0
LINGER_BYTES = 1 << 20
# Turned-away connections lingering at once; beyond, they are closed at once.
MAX_LINGERING = 1024

# Young (generation 1) collections between two full collections; Python's default is 10.
FULL_GC_THRESHOLD = 3000
GC_PACE_S = 0.1  # see pace_gc

_HEAD, _BODY = 0, 1  # receiving a request head (or nothing yet), or a request body
_HEAD_END = b"\r\n\r\n"
# Body bytes received and not yet read by the application before reading pauses.
HIGH_WATER = 1 << 16

Message = MutableMapping[str, Any]
App = Callable[
    [Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]
_BAD_HEADER_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")
_STATUS_LINES = {
    status: f"HTTP/1.1 {status} {status.phrase}\r\n".encode() for status in http.HTTPStatus
}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_ASGI = {"version": "3.0", "spec_version": "2.3"}
_METHODS = {m.encode(): m for m in ("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH")}
_DISCONNECT: Message = {"type": "http.disconnect"}


@dataclass(frozen=True, slots=True)
class Limits:
    max_head_bytes: int
    max_headers: int
    head_timeout_s: float
    body_timeout_s: float
    keepalive_timeout_s: float
    max_connections: int
    port: int  # the data port; connections to other ports (admin) are not capped

    @classmethod
    def of(cls, config: ServeConfig) -> Limits:
        limits = cls(
            max_head_bytes=config.max_head_bytes,
            max_headers=config.max_headers,
            head_timeout_s=config.head_timeout_s,
            body_timeout_s=config.body_timeout_s,
            keepalive_timeout_s=config.keepalive_timeout_s,
            max_connections=config.max_connections,
            port=config.port,
        )
        for field in dataclasses.fields(cls):
            value = getattr(limits, field.name)
            if field.name != "port" and not value > 0:
                raise errors.UsageError(f"{field.name} must be positive, got {value}")
        return limits


class _Gate:
    """Connection counts shared by every connection of one worker."""

    def __init__(self) -> None:
        self.open = 0
        self.lingering = 0
        self.warned_at = float("-inf")  # one log line per burst of turned-away connections
        self.pacing_gc = False
        # Set by retire(): every response on the data port closes its connection.
        self.retiring = False


def raise_fd_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft if soft != resource.RLIM_INFINITY else target
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft
    return target


def tune_gc() -> None:
    """Keep full garbage collections rare and short in a serving process.

    Thousands of open connections are over a hundred thousand live objects; a full
    collection walks all of them, and the whole start-up heap (modules, onnxruntime, numpy)
    too: 90 ms of CPU, 400 ms of stall on a busy machine (measured under 5,000 idle
    connections). Start-up objects are frozen out of every later collection, and a full
    collection waits for FULL_GC_THRESHOLD younger ones (Python's default: 10), i.e. about
    five minutes with `pace_gc` running. Cycles among young objects are still found within
    GC_PACE_S; only cycles among long-lived objects wait longer.
    """
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_GC_THRESHOLD)


def pace_gc(loop: asyncio.AbstractEventLoop) -> None:
    """Collect the young generations every GC_PACE_S, not only on allocations.

    CPython 3.11 starts a young collection when allocations minus deallocations since the
    last one pass a threshold, whatever generation the freed objects were in. Under
    connection churn old connections die as new ones arrive, the difference stays near zero
    and the young generation grew to 130,000 objects (measured) before a collection finally
    ran: a 100-300 ms stall for every client. On a clock, each collection holds only what was
    allocated since the last tick (a fraction of a millisecond when idle).
    """
    gc.collect(1)
    loop.call_later(GC_PACE_S, pace_gc, loop)


def configure(config: ServeConfig) -> type[Connection]:
    """The protocol class for uvicorn.Config(http=...) enforcing `config`'s limits.

    Raises the process's file-descriptor limit first and lowers the connection cap below it
    if needed: past the fd limit, accept() fails for every client, admin included.
    """
    limits = Limits.of(config)
    budget = max(1, raise_fd_limit() - FD_RESERVE)
    if limits.max_connections > budget:
        log.warning(
            "max_connections %d lowered to %d: the file-descriptor limit is %d",
            limits.max_connections, budget, budget + FD_RESERVE,
        )  # fmt: skip
        limits = dataclasses.replace(limits, max_connections=budget)
    return protocol_class(limits)


def protocol_class(limits: Limits) -> type[Connection]:
    """A protocol class bound to `limits`, with its own connection count (one per server)."""

    class Bound(Connection):
        pass

    Bound.limits = limits
    Bound.gate = _Gate()
    return Bound


def _response(status: int, message: str, extra: bytes = b"") -> bytes:
    body = orjson.dumps({"error": " ".join(message.split())})
    phrase = http.HTTPStatus(status).phrase
    head = (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n"
    ).encode()
    return head + extra + b"\r\n" + body


def _status_line(status: int) -> bytes:
    line: bytes | None = _STATUS_LINES.get(status)  # type: ignore[call-overload]
    if line is None:
        if not (isinstance(status, int) and 100 <= status <= 599):
            raise RuntimeError(f"invalid HTTP status {status!r}")
        line = f"HTTP/1.1 {status} \r\n".encode()
    return line


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing; the reason is on the protocol."""


class _Request:
    """One request of a connection: its ASGI scope, the body received and not yet read, and
    its response's progress. `receive` and `send` are the application's ASGI callables."""

    __slots__ = (
        "body",
        "buffered",
        "chunked",
        "complete",
        "conn",
        "disconnected",
        "done",
        "expect_continue",
        "head",
        "keep_alive",
        "remaining",
        "scope",
        "started",
        "waiter",
        "written",
    )

    def __init__(
        self, conn: Connection, scope: Message, keep_alive: bool, expect_continue: bool
    ) -> None:
        self.conn = conn
        self.scope = scope
        self.body: list[bytes] = []  # received, not yet read by the application
        self.buffered = 0
        self.complete = False  # the whole body has been received
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue  # 100 Continue not sent yet
        self.waiter: asyncio.Future[None] | None = None
        self.started = False  # http.response.start received
        self.written = False  # the response head is on the wire
        self.done = False  # the response is complete
        self.disconnected = False  # the client is gone (or the request was refused)
        self.head: Message = _DISCONNECT  # the http.response.start message, until written
        self.chunked = False
        self.remaining = 0  # Content-Length bytes still to send

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self) -> Message:
        conn = self.conn
        if self.expect_continue:
            self.expect_continue = False
            if not self.started and not conn.transport.is_closing():
                conn.transport.write(_CONTINUE)
        while not (self.body or self.complete or self.disconnected or self.done):
            conn.update_reading()  # the application asks for more: read again if paused
            self.waiter = conn.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        if self.disconnected or self.done:
            return _DISCONNECT
        chunks = self.body
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.body = []
        paused, self.buffered = self.buffered > HIGH_WATER, 0
        if paused:
            conn.update_reading()
        return {"type": "http.request", "body": body, "more_body": not self.complete}

    async def send(self, message: Message) -> None:
        conn = self.conn
        if conn.write_paused and not self.disconnected:
            await conn.drain()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected http.response.start, got {kind!r}")
            self.started = True
            if self.expect_continue and not self.complete:
                # The client waits for 100 Continue before sending its body, and it will not
                # come: close after this answer (RFC 9110 10.1.1) rather than take whatever it
                # sends next for that body.
                self.keep_alive = False
            self.expect_continue = False
            self.head = message  # written with the first body part: one write per response
            return
        if self.done or kind != "http.response.body":
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        if self.scope["method"] == "HEAD":
            body = b""
        if not self.written:
            self.written = True
            out = self._head(None if more else len(body))
            if self.chunked:
                out += b"%x\r\n%s\r\n" % (len(body), body) if body else b""
            else:
                out += body
        elif self.chunked:
            out = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
        else:
            out = body
        if not self.chunked and self.scope["method"] != "HEAD":
            self.remaining -= len(body)
            if self.remaining < 0 or (not more and self.remaining):
                raise RuntimeError("response body does not match its Content-Length")
        if not more:
            if self.chunked:
                out += b"0\r\n\r\n"
            self.done = True
            conn.transport.write(out)
            conn.finished(self)
        elif out:
            conn.transport.write(out)

    def _head(self, final_length: int | None) -> bytes:
        """The status line and headers; `final_length`: the body's length when it is sent
        whole (a Content-Length is added if the application gave none)."""
        message = self.head
        status = message["status"]
        parts = [_status_line(status)]
        length = None
        conn = self.conn
        keep_alive = self.keep_alive and not (conn.gate.retiring and conn.on_data_port)
        headers = message.get("headers", ())
        defaults = conn.server_state.default_headers
        if defaults:
            headers = [*defaults, *headers]
        # One search over every name and value: no CR, LF or other control character can
        # split a header (and a client-supplied value echoed back cannot inject one).
        if _BAD_HEADER_VALUE.search(b"".join(chain.from_iterable(headers))):
            raise RuntimeError("invalid character in a response header")
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"content-length":
                length = int(value)
            elif lowered == b"transfer-encoding":
                self.chunked = value.lower() == b"chunked"
            elif lowered == b"connection":
                if b"close" in value.lower():
                    keep_alive = False
                continue  # written once below
            parts += (name, b": ", value, b"\r\n")
        if length is None and not self.chunked and status not in (204, 304):
            if final_length is None:
                self.chunked = True
                parts.append(b"transfer-encoding: chunked\r\n")
            else:
                length = final_length
                parts += (b"content-length: ", str(final_length).encode(), b"\r\n")
        self.remaining = length or 0
        if not keep_alive:
            self.keep_alive = False
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; made by uvicorn's server like its own protocols (same
    constructor), registered in its server state so that graceful shutdown waits for it."""

    limits: ClassVar[Limits]
    gate: ClassVar[_Gate]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.app: App = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.parser = httptools.HttpRequestParser(self)
        with contextlib.suppress(AttributeError):  # httptools < 0.6.3
            # Answer the first of pipelined requests even when it asked to close.
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None
        self.on_data_port = False
        # Spread at random over [T, 2T]: connections opened in one burst (a client pool
        # starting, or an attacker holding thousands) are not all closed, and reopened, at
        # once, which stalled the event loop for every client (never below T: clients keep
        # idle connections for up to the server's announced timeout).
        self.timeout_keep_alive = self.limits.keepalive_timeout_s * (1 + random.random())
        # One timer per connection checks for idleness (not one armed and cancelled per
        # request): loop time since which nothing is in flight, None while busy.
        self._idle_since: float | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        # Requests: the one whose application runs (answers go out in order), those
        # pipelined behind it, the one being parsed, and one to start after this read.
        self.current: _Request | None = None
        self.queue: deque[_Request] = deque()
        self.parsing: _Request | None = None
        self._start: _Request | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._expect = False
        self.read_paused = False
        self.write_paused = False
        self._drainers: list[asyncio.Future[None]] = []
        # Limits.
        self._phase = _HEAD
        self._head_bytes = 0  # bytes of the current head received so far
        self._tail = b""  # the last bytes of a partial head (its end may straddle two reads)
        self._since = 0.0  # loop time: first byte of a partial head, or last body progress
        self._timer: asyncio.TimerHandle | None = None
        self._max_head = self.limits.max_head_bytes
        self._refusal: tuple[int, str] | None = None
        self._done = False  # refused or turned away: what still arrives is dropped
        self._counted = False
        self._lingering = False
        self._linger_bytes = 0

    # -- connections

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.connections.add(self)  # type: ignore[arg-type]
        self.transport = transport
        self.server = get_local_addr(transport)
        self.client = get_remote_addr(transport)
        limits, gate = self.limits, self.gate
        if not gate.pacing_gc:
            gate.pacing_gc = True
            pace_gc(self.loop)  # from the first connection on, in this worker's loop
        if self.server is not None and self.server[1] == limits.port:
            self.on_data_port = True
            if gate.open >= limits.max_connections:
                if self.loop.time() - gate.warned_at > 10:
                    gate.warned_at = self.loop.time()
                    log.warning("%d connections open: answering 503 to more", gate.open)
                message = f"too many connections (at most {limits.max_connections}); retry later"
                self._answer_and_close(_response(503, message, b"retry-after: 1\r\n"))
                return
            gate.open += 1
            self._counted = True
        # A connection that never sends a byte is idle too.
        self._idle_since = self.loop.time()
        self._idle_timer = self.loop.call_later(self.timeout_keep_alive, self._idle_check)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        if self._counted:
            self._counted = False
            self.gate.open -= 1
        if self._lingering:
            self._lingering = False
            self.gate.lingering -= 1
        self._cancel_timer()
        self._unset_keepalive_if_required()
        for request in (self.current, self.parsing, *self.queue):
            if request is not None and not request.done:
                request.disconnected = True
                request.wake()
        self.queue.clear()
        # No reference cycles left for the collector (a request points at its connection).
        self._start = self.current = self.parsing = None
        self.write_paused = False
        self._wake_drainers()
        if exc is None:
            self.transport.close()

    def eof_received(self) -> None:
        pass  # the client half-closed: answer what it sent, then close as usual

    def shutdown(self) -> None:
        """The server is shutting down: close when the request in progress is answered."""
        if self._lingering or self.current is None:
            self.transport.close()
        else:
            self.current.keep_alive = False
            self.queue.clear()

    def _idle_check(self) -> None:
        """Close the connection once it has been idle for the keep-alive timeout."""
        self._idle_timer = None
        if self.transport.is_closing():
            return
        since = self._idle_since
        left = self.timeout_keep_alive
        if since is not None:  # idle; else busy: look again later
            left = since + self.timeout_keep_alive - self.loop.time()
            if left <= 0:
                self.transport.close()
                return
        self._idle_timer = self.loop.call_later(left, self._idle_check)

    def _unset_keepalive_if_required(self) -> None:
        self._idle_since = None
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    # -- flow control

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_drainers()

    async def drain(self) -> None:
        waiter = self.loop.create_future()
        self._drainers.append(waiter)
        await waiter

    def _wake_drainers(self) -> None:
        drainers, self._drainers = self._drainers, []
        for waiter in drainers:
            if not waiter.done():
                waiter.set_result(None)

    def update_reading(self) -> None:
        """Read while nothing waits in the pipeline and the body being received has fewer
        than HIGH_WATER unread bytes; pause otherwise."""
        parsing = self.parsing
        pause = bool(self.queue) or (
            parsing is not None and not parsing.done and parsing.buffered > HIGH_WATER
        )
        if pause != self.read_paused and not self.transport.is_closing():
            self.read_paused = pause
            if pause:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    # -- data

    def data_received(self, data: bytes) -> None:
        # The common request (head and body in one read) passes a few attribute checks here.
        if self._done:
            self._drop(len(data))
            return
        self._idle_since = None  # busy until a response leaves it idle again
        if self._phase != _BODY:
            size, room = len(data), self._max_head - self._head_bytes
            if size > room and not (room > 0 and _HEAD_END in self._tail + data[:room]):
                self._refuse(431, f"request head over {self._max_head} bytes")
                return
            self._head_bytes += size
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # No protocol upgrades here: the request is served as plain HTTP; what follows
            # its head is not parsed, so the connection ends with the response.
            parsing = self.parsing
            if parsing is not None:
                parsing.keep_alive = False
                if not parsing.complete:
                    parsing.complete = True
                    parsing.wake()
                self._phase = _HEAD
        except httptools.HttpParserError as exc:
            status, message = self._refusal or (400, f"invalid HTTP request: {exc}")
            self._refusal = None
            self._refuse(status, message)
            return
        if self._start is not None:
            request, self._start = self._start, None
            self._run(request)
        phase = self._phase
        if phase == _BODY:
            self._since = self.loop.time()
            if self._timer is None:
                self._arm(self.limits.body_timeout_s)
        elif self._head_bytes:
            # Part of a head (or blank lines before one) has arrived: it must end in time.
            # (A head that starts after another request inside one read counts from the
            # next read on; until then the keep-alive timeout covers it.)
            self._tail = (self._tail + data)[-3:]
            if self._timer is None:
                self._since = self.loop.time()
                self._arm(self.limits.head_timeout_s)

    # -- parser callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._expect = False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        value = value.rstrip(b" \t")  # llhttp keeps trailing whitespace (RFC 9110 5.5)
        if name == b"expect" and value.lower() == b"100-continue":
            self._expect = True
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if len(self._headers) > self.limits.max_headers:
            self._refusal = (431, f"more than {self.limits.max_headers} header fields")
            raise _Refused
        self._phase = _BODY
        self._head_bytes = 0
        self._tail = b""
        if self._timer is not None:
            self._cancel_timer()
        parser = self.parser
        version = parser.get_http_version()
        target = self._url
        if target[:1] == b"/":  # origin form, already checked by the parser
            raw_path, _, query = target.partition(b"#")[0].partition(b"?")
        else:  # absolute form (or garbage, refused here)
            url = httptools.parse_url(target)
            raw_path, query = url.path or b"/", url.query or b""
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        method = parser.get_method()
        scope: Message = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": version,
            "server": self.server,
            "client": self.client,
            "scheme": "http",
            "method": _METHODS.get(method) or method.decode("ascii"),
            "root_path": "",
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "headers": self._headers,
        }
        keep_alive = version != "1.0" and parser.should_keep_alive()
        request = _Request(self, scope, keep_alive, self._expect)
        self.parsing = request
        if self.current is None and not self.queue:
            self.current = request
            self._start = request  # once this read is parsed: its body may be in it too
        else:
            self.queue.append(request)  # answered in order, after the one in progress
            self.update_reading()

    def on_body(self, body: bytes) -> None:
        request = self.parsing
        if request is None or request.done or request.disconnected:
            return  # answered already (say, 413 before the body): dropped
        request.body.append(body)
        request.buffered += len(body)
        if request.buffered > HIGH_WATER and not self.read_paused:
            self.update_reading()
        request.wake()

    def on_message_complete(self) -> None:
        self._phase = _HEAD
        if self._timer is not None:
            self._cancel_timer()
        request = self.parsing
        if request is not None:
            request.complete = True
            request.wake()

    # -- the application

    def _run(self, request: _Request) -> None:
        """Start the application on `request`. It runs right here until it first waits; only
        then does it get a task (most inference requests never wait)."""
        self.current = request
        coro = self.app(request.scope, request.receive, request.send)
        try:
            awaited = coro.send(None)  # type: ignore[attr-defined]
        except StopIteration:
            self._returned(request)
            return
        except BaseException as exc:  # answered, logged, re-raised if fatal
            self._failed(request, exc)
            return
        task = self.loop.create_task(self._resume(request, coro, awaited))  # type: ignore[arg-type]
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _resume(
        self, request: _Request, coro: Coroutine[Any, Any, None], awaited: Any
    ) -> None:
        """Drive the application's coroutine on, as a task would have from the start: wait for
        what it waits on, then resume it (it reads the outcome, an exception or a
        cancellation of this task included, from that future itself)."""
        try:
            while True:
                if awaited is None:
                    await asyncio.sleep(0)  # a bare yield
                    awaited = coro.send(None)
                    continue
                # What a task does with a future its coroutine yields: clear the flag the
                # future set when yielded (awaiting it again requires that), then wait.
                awaited._asyncio_future_blocking = False
                with contextlib.suppress(BaseException):
                    await awaited
                if awaited.done():
                    awaited = coro.send(None)
                else:  # this task was cancelled while the future lives on
                    awaited = coro.throw(asyncio.CancelledError())
        except StopIteration:
            self._returned(request)
        except BaseException as exc:
            self._failed(request, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise

    def _returned(self, request: _Request) -> None:
        if request.done or request.disconnected:
            return
        if not request.written:
            log.error("the application returned without a complete response")
            self._fail_response(request)
        else:
            self.transport.close()  # a response cut short: the client must not wait for more

    def _failed(self, request: _Request, exc: BaseException) -> None:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise exc
        if not isinstance(exc, asyncio.CancelledError):
            log.error("internal error in the application", exc_info=exc)
        if request.done or request.disconnected:
            return
        if request.written or isinstance(exc, asyncio.CancelledError):
            self.transport.close()
        else:
            self._fail_response(request)

    def _fail_response(self, request: _Request) -> None:
        request.done = True
        request.keep_alive = False
        self.transport.write(_response(500, "internal error"))
        self.finished(request)

    def finished(self, request: _Request) -> None:
        """`request` is answered: close, start the next pipelined one, or wait for one."""
        self.server_state.total_requests += 1
        if self.current is request:
            self.current = None
        if not request.keep_alive:
            self.transport.close()
            return
        if self.transport.is_closing():
            return
        if self.read_paused:
            # Answered before its body was read (a 413, a 503): read on, dropping the rest of
            # the body, so that a client still sending it finishes and reads the answer.
            self.update_reading()
        if self.queue:
            self.loop.call_soon(self._next)
        else:
            self._idle_since = self.loop.time()
            if self._idle_timer is None:
                self._idle_timer = self.loop.call_later(self.timeout_keep_alive, self._idle_check)

    def _next(self) -> None:
        if self.current is not None or not self.queue or self.transport.is_closing():
            return
        request = self.queue.popleft()
        self.update_reading()
        self._run(request)

    # -- timeouts

    def _arm(self, delay: float) -> None:
        self._timer = self.loop.call_later(delay, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        parsing = self.parsing
        if self.read_paused or (
            # Waiting for us: we read no more until the application asks for the body.
            self._phase == _BODY and parsing is not None and parsing.expect_continue
        ):
            self._since = now
        if self._phase == _BODY:
            left = self._since + self.limits.body_timeout_s - now
            if left <= 0:
                self._refuse(
                    408, f"request body stalled: no data for {self.limits.body_timeout_s:g} s"
                )
                return
        else:
            left = self._since + self.limits.head_timeout_s - now
            if left <= 0:
                self._refuse(
                    408,
                    f"request head not complete within {self.limits.head_timeout_s:g} s",
                )
                return
        self._arm(left)

    # -- error answers

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` with a JSON error where an answer fits, and close."""
        self._refusal = (status, message)
        self._done = True
        self._cancel_timer()
        log.info("refused a request with %d: %s", status, message)
        answer = True
        parsing = self.parsing
        for request in (self.current, *self.queue):
            if request is not None and not request.done:
                # The application may still be running: it now sees a disconnect and its
                # response goes nowhere.
                request.disconnected = True
                request.wake()
        self.queue.clear()
        if parsing is not None:
            if not parsing.done:
                # Only the request being received, and only before its response began, can
                # get the answer (anything else would break the order of responses).
                answer = self._phase == _BODY and not parsing.started
                parsing.disconnected = True
                parsing.wake()
            elif self._phase == _BODY:
                answer = False  # this request was answered already; its body is discarded
        if answer:
            self._answer_and_close(_response(status, message))
        else:
            self.transport.close()

    def _answer_and_close(self, response: bytes) -> None:
        self._done = True
        self._unset_keepalive_if_required()
        self.transport.write(response)
        if self.gate.lingering >= MAX_LINGERING or not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()  # the client reads the answer, then end of stream
        self._lingering = True
        self.gate.lingering += 1
        self._timer = self.loop.call_later(LINGER_S, self.transport.close)

    def _drop(self, size: int) -> None:
        self._linger_bytes += size
        if self._linger_bytes > LINGER_BYTES or not self._lingering:
            self.transport.close()


def retire(protocol: type[Connection]) -> None:
    """From now on every response on the data port closes its connection (a scale-down: the
    clients reconnect to the workers that stay)."""
    protocol.gate.retiring = True


# The name this protocol had while it was a subclass of uvicorn's (kept for importers).
LimitedHttpToolsProtocol = Connection
