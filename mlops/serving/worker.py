"""One engine worker process: uvicorn on the shared data port plus this worker's admin port.

Run as `python -m mlops.serving.worker CONFIG_JSON INDEX [--join]` by the supervisor, or
in-process for a single unsupervised replica.

A worker takes traffic only once it can serve it. Its admin socket answers from the start (the
controller watches it load), but the data socket joins the port's SO_REUSEPORT group (listen)
only when start-up loading is over and, for a worker that joins a running engine (`--join`,
a scale-up), when every version the desired state names is READY with its routing table.

SIGUSR1 retires the worker without losing a request (a scale-down): it stops listening but
first accepts what already waits in its accept queue, answers the next request of every open
connection with `Connection: close` (the client reconnects to a worker that stays), lets idle
connections reach their keep-alive timeout, and exits once none is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import uvicorn

from mlops import errors, fsio
from mlops.serving import desired, protocol
from mlops.serving.app import Engine
from mlops.serving.config import ServeConfig

# After the server stopped (uvicorn's own graceful wait is over): how long busy pool threads
# may take before the worker leaves without them.
EXIT_GRACE_SECONDS = 2.0
BACKLOG = 2048
READY_POLL_S = 0.05


def ensure_free(host: str, port: int) -> None:
    """Refuse a port someone already listens on.

    SO_REUSEPORT would otherwise let this engine silently join another process's port and
    take half of its connections. The probe binds as `bind` does but without SO_REUSEPORT:
    TIME_WAIT sockets of a stopped engine pass (SO_REUSEADDR), any listener fails.
    """
    probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    except OSError as exc:
        raise errors.UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    finally:
        probe.close()


def bind(host: str, port: int, reuse_port: bool, *, listen: bool = True) -> socket.socket:
    """A bound socket (port 0: one the kernel picks). `listen=False` leaves it out of the
    port's SO_REUSEPORT group, which a socket joins only when it listens."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        # Every worker binds the same port; the kernel spreads connections across them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if listen:
        sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


def state_path(config: ServeConfig, index: int) -> Path:
    return config.state_dir / f"worker-{index}.json"


def _write_state(config: ServeConfig, index: int, admin_port: int, *, serving: bool = True) -> Path:
    path = state_path(config, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "index": index,
        "pid": os.getpid(),
        "admin_url": f"http://{config.admin_host}:{admin_port}",
        "url": f"http://{config.host}:{config.port}",
        "serving": serving,  # listening on the data port
    }
    fsio.atomic_write(path, orjson.dumps(doc))  # readers never see a half-written file
    return path


def _remove_state(config: ServeConfig, index: int) -> None:
    # Only our own: after a scale-down and a quick scale-up, a new worker with the same index
    # may already have announced itself.
    path = state_path(config, index)
    with contextlib.suppress(OSError, ValueError):
        if orjson.loads(path.read_bytes()).get("pid") == os.getpid():
            path.unlink()


def _listening_socket(host: str, port: int, *, reuse: bool, listen: bool) -> socket.socket:
    try:
        return bind(host, port, reuse, listen=listen)
    except OSError as exc:
        raise errors.UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


class _Server(uvicorn.Server):
    def protocol(self, _loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
        """A connection protocol as uvicorn makes them (for sockets it did not open itself)."""
        protocol_class: Any = self.config.http_protocol_class
        made: asyncio.Protocol = protocol_class(
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
            _loop=_loop,
        )
        return made


class _Worker:
    def __init__(
        self,
        config: ServeConfig,
        index: int,
        server: _Server,
        engine: Engine,
        data: socket.socket,
        admin_port: int,
        http_class: type[protocol.Connection],
        *,
        join: bool,
    ) -> None:
        self.config, self.index, self.server, self.engine = config, index, server, engine
        self.http_class = http_class
        self.data, self.admin_port, self.join = data, admin_port, join
        self.data_server: asyncio.AbstractServer | None = None
        self.draining = False

    async def open_data_port(self) -> None:
        """Join the data port once this worker can serve what the engine serves."""
        while not self.server.started:
            if self.server.should_exit:
                return
            await asyncio.sleep(0.01)
        _write_state(self.config, self.index, self.admin_port, serving=False)
        while not self._can_serve():
            if self.server.should_exit or self.draining:
                return
            await asyncio.sleep(READY_POLL_S)
        loop = asyncio.get_running_loop()
        self.data_server = await loop.create_server(
            self.server.protocol, sock=self.data, backlog=BACKLOG
        )
        # uvicorn closes it with its own servers at shutdown.
        self.server.servers.append(self.data_server)
        _write_state(self.config, self.index, self.admin_port, serving=True)

    def _can_serve(self) -> bool:
        if self.engine.repository.starting:
            return False
        # A worker joining a running engine waits until it serves every version as the others
        # do; a starting engine opens once start-up loading is over (a version that failed to
        # load must not keep every other model unreachable).
        return not self.join or self.engine.ready()

    async def drain(self) -> None:
        """Retire this worker (SIGUSR1) without losing a request; see the module docstring."""
        if self.draining:
            return
        self.draining = True
        _write_state(self.config, self.index, self.admin_port, serving=False)
        # Every response on the data port from here on (the ones in flight included) carries
        # Connection: close, and its connection closes after it.
        protocol.retire(self.http_class)
        await self._close_the_door()
        loop = asyncio.get_running_loop()
        # Idle connections close at their keep-alive timeout (at most twice the setting).
        deadline = loop.time() + 2 * self.config.keepalive_timeout_s + 1.0
        while loop.time() < deadline and any(
            self._on_data_port(c) for c in self.server.server_state.connections
        ):
            await asyncio.sleep(0.05)
        self.server.should_exit = True

    async def _close_the_door(self) -> None:
        """Stop listening without resetting connections the kernel already queued for this
        socket: a duplicate keeps the socket (and its queue) open while the queue is emptied
        into ordinary connections, then goes. Only a connection that arrives in the
        microseconds between the last accept and the close can still be refused."""
        if self.data_server is None:
            return  # never listened: nothing is queued
        spare = socket.socket(fileno=os.dup(self.data.fileno()))
        spare.setblocking(False)
        self.data_server.close()
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    conn, _ = spare.accept()
                except (BlockingIOError, InterruptedError):
                    break
                await loop.connect_accepted_socket(self.server.protocol, conn)
        except OSError as exc:
            logging.getLogger("mlops.serving").warning("closing the data port: %s", exc)
        finally:
            spare.close()

    def _on_data_port(self, connection: Any) -> bool:
        local = getattr(connection, "server", None)
        return local is not None and local[1] == self.config.port


async def _serve(config: ServeConfig, index: int, *, check_port: bool, join: bool) -> None:
    if check_port:
        ensure_free(config.host, config.port)  # the supervisor checks for its workers
    # The data plane on `host`, bound now (a port problem fails the start) and listened on
    # later; the admin socket on `admin_host` (loopback by default), on the kernel's choice of
    # port unless one was given.
    data = _listening_socket(config.host, config.port, reuse=True, listen=False)
    admin = _listening_socket(
        config.admin_host, config.admin_port_of(index), reuse=False, listen=True
    )
    admin_port = int(admin.getsockname()[1])
    engine = Engine(
        config,
        routing_file=config.state_dir / f"routing-{index}.json",
        loaded_file=config.state_dir / f"loaded-{index}.json",
        desired_file=config.state_dir / desired.FILE,
    )
    engine.serve_admin_on(admin_port)
    http_class = protocol.configure(config)  # httptools with the connection limits
    server = _Server(
        uvicorn.Config(
            engine,
            http=http_class,
            ws="none",
            loop="none",  # already running on uvloop
            lifespan="on",
            access_log=False,
            log_level=config.log_level,
            server_header=False,
            date_header=False,
            proxy_headers=False,  # the engine reads no forwarded headers: no middleware
            timeout_graceful_shutdown=10,
        )
    )
    worker = _Worker(config, index, server, engine, data, admin_port, http_class, join=join)
    loop = asyncio.get_running_loop()
    draining: set[asyncio.Task[None]] = set()
    loop.add_signal_handler(signal.SIGUSR1, lambda: draining.add(loop.create_task(worker.drain())))
    opener = asyncio.create_task(worker.open_data_port())
    stopper = asyncio.create_task(_stop_loading_on_exit(server, engine))
    try:
        await server.serve(sockets=[admin])
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
        for task in (opener, stopper, *draining):
            task.cancel()
        if worker.data_server is None:
            data.close()
        _remove_state(config, index)


async def _stop_loading_on_exit(server: uvicorn.Server, engine: Engine) -> None:
    # At the signal, not after uvicorn's graceful wait: a load request that is warming up
    # would otherwise hold the shutdown for the whole grace period.
    while not server.should_exit:
        await asyncio.sleep(0.05)
    engine.repository.stop_loading()


def _leave_stuck_threads(grace: float) -> None:
    """Exit now if a thread outlives the server by more than `grace` seconds.

    A session being created (onnxruntime cannot interrupt that) or a long model run keeps a
    pool thread busy, and the interpreter would wait for it at exit: shutdown must end within
    its grace period whatever a load is doing."""
    deadline = time.monotonic() + grace
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    main = threading.main_thread()
    stuck = [t.name for t in threading.enumerate() if t is not main and not t.daemon]
    if stuck:
        logging.getLogger("mlops.serving").warning(
            "leaving busy threads behind at shutdown: %s", ", ".join(stuck)
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def run(config: ServeConfig, index: int, *, check_port: bool = True, join: bool = False) -> None:
    """Serve until SIGTERM or SIGINT (uvicorn installs the handlers and shuts down cleanly).
    `check_port`: refuse a data port another program listens on (a worker of a supervisor
    leaves that to it); `join`: this worker joins a running engine (see the docstring)."""
    import uvloop

    logging.basicConfig(
        level=config.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    # uvicorn re-raises the signal that stopped it once it has shut down; with no-op handlers
    # underneath, that ends in a clean return (exit 0) instead of death by signal.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    protocol.tune_gc()  # after every import: the start-up heap is never walked again
    uvloop.run(_serve(config, index, check_port=check_port, join=join))
    _leave_stuck_threads(EXIT_GRACE_SECONDS)


def _die_with_parent() -> None:
    # Linux only: if the supervisor is killed outright, take the worker down too.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


if __name__ == "__main__":
    _die_with_parent()
    try:
        run(
            ServeConfig.from_json(sys.argv[1]),
            int(sys.argv[2]),
            check_port=False,
            join="--join" in sys.argv[3:],
        )
    except errors.MlopsError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        sys.exit(1)
