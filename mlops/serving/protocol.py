"""HTTP/1.1 connections with the limits a front door needs, on uvicorn's httptools protocol.

uvicorn's protocol has a keep-alive timeout but no limit on the size of a request head (a
48 MiB header is accumulated piece by piece, stalling the worker), no time limit on a head
or a body that arrives a byte at a time, nothing for a connection that never sends a byte,
and answers malformed requests in text/plain. This subclass adds, per connection:

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

The inference fast path (a request that arrives in one read) pays a few attribute checks:
timers are armed only for heads or bodies that span reads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import http
import logging
import random
import resource
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
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


def configure(config: ServeConfig) -> type[LimitedHttpToolsProtocol]:
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


def protocol_class(limits: Limits) -> type[LimitedHttpToolsProtocol]:
    """A protocol class bound to `limits`, with its own connection count (one per server)."""

    class Bound(LimitedHttpToolsProtocol):
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


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing; the reason is on the protocol."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[Limits]
    gate: ClassVar[_Gate]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # Spread at random over [T, 2T]: connections opened in one burst (a client pool
        # starting, or an attacker holding thousands) are not all closed, and reopened, at
        # once, which stalled the event loop for every client (never below T: clients keep
        # idle connections for up to the server's announced timeout).
        self.timeout_keep_alive = self.limits.keepalive_timeout_s * (  # type: ignore[assignment]
            1 + random.random()
        )
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
        super().connection_made(transport)
        limits, gate = self.limits, self.gate
        if not gate.pacing_gc:
            gate.pacing_gc = True
            pace_gc(self.loop)  # from the first connection on, in this worker's loop
        if self.server is not None and self.server[1] == limits.port:
            if gate.open >= limits.max_connections:
                if self.loop.time() - gate.warned_at > 10:
                    gate.warned_at = self.loop.time()
                    log.warning("%d connections open: answering 503 to more", gate.open)
                message = f"too many connections (at most {limits.max_connections}); retry later"
                self._answer_and_close(_response(503, message, b"retry-after: 1\r\n"))
                return
            gate.open += 1
            self._counted = True
        # A connection that never sends a byte is idle too (uvicorn arms this only after a
        # response).
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if self._counted:
            self._counted = False
            self.gate.open -= 1
        if self._lingering:
            self._lingering = False
            self.gate.lingering -= 1
        self._cancel_timer()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        if self._lingering:
            self.transport.close()
        else:
            super().shutdown()

    # -- data

    def data_received(self, data: bytes) -> None:
        # The common request (head and body in one read) passes a few attribute checks here.
        if self._done:
            self._drop(len(data))
            return
        self._unset_keepalive_if_required()
        if self._phase != _BODY:
            size, room = len(data), self._max_head - self._head_bytes
            if size > room and not (room > 0 and _HEAD_END in self._tail + data[:room]):
                self._refuse(431, f"request head over {self._max_head} bytes")
                return
            self._head_bytes += size
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # No protocol upgrades here: the request was served as plain HTTP; what follows
            # its head is not parsed, so the connection ends with the response.
            if self.cycle is not None:
                self.cycle.keep_alive = False
        except httptools.HttpParserError as exc:
            status, message = self._refusal or (400, f"invalid HTTP request: {exc}")
            self._refusal = None
            self._refuse(status, message)
            return
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

    def _should_upgrade_to_ws(self) -> bool:
        return False  # the engine speaks plain HTTP only

    # -- parser callbacks

    # (HttpToolsProtocol.x(self) rather than super().x(): these run for every request.)

    def on_headers_complete(self) -> None:
        if len(self.headers) > self.limits.max_headers:
            self._refusal = (431, f"more than {self.limits.max_headers} header fields")
            raise _Refused
        self._phase = _BODY
        self._head_bytes = 0
        self._tail = b""
        if self._timer is not None:
            self._cancel_timer()
        HttpToolsProtocol.on_headers_complete(self)

    def on_message_complete(self) -> None:
        self._phase = _HEAD
        if self._timer is not None:
            self._cancel_timer()
        HttpToolsProtocol.on_message_complete(self)

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
        cycle = self.cycle
        if self.flow.read_paused or (
            # Waiting for us: we read no more until the application asks for the body.
            self._phase == _BODY and cycle is not None and cycle.waiting_for_100_continue
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

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, msg)

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` with a JSON error where an answer fits, and close."""
        self._refusal = (status, message)
        self._done = True
        self._cancel_timer()
        log.info("refused a request with %d: %s", status, message)
        answer = True
        cycle = self.cycle
        if cycle is not None:
            if not cycle.response_complete:
                # The application may still be running a request: it now sees a disconnect
                # and its response goes nowhere.
                cycle.disconnected = True
                cycle.message_event.set()
                # Only the request being received, and only before its response began, can
                # get the answer (anything else would break the order of responses).
                answer = self._phase == _BODY and not cycle.response_started
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
