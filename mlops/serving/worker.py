"""One engine worker process: uvicorn on the shared port plus this worker's admin port.

Run as `python -m mlops.serving.worker CONFIG_JSON INDEX` by the supervisor, or in-process
for a single replica.
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

import orjson
import uvicorn

from mlops import errors, fsio
from mlops.serving import desired, protocol
from mlops.serving.app import Engine
from mlops.serving.config import ServeConfig

# After the server stopped (uvicorn's own graceful wait is over): how long busy pool threads
# may take before the worker leaves without them.
EXIT_GRACE_SECONDS = 2.0


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


def bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        # Every worker binds the same port; the kernel spreads connections across them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def state_path(config: ServeConfig, index: int) -> Path:
    return config.state_dir / f"worker-{index}.json"


def _write_state(config: ServeConfig, index: int, admin_port: int) -> Path:
    path = state_path(config, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "index": index,
        "pid": os.getpid(),
        "admin_url": f"http://{config.admin_host}:{admin_port}",
        "url": f"http://{config.host}:{config.port}",
    }
    fsio.atomic_write(path, orjson.dumps(doc))  # readers never see a half-written file
    return path


async def _serve(config: ServeConfig, index: int) -> None:
    admin_port = config.first_admin_port + index
    if config.replicas <= 1:
        ensure_free(config.host, config.port)  # the supervisor checks for replicas
    sockets = []
    # The data plane on `host`; the admin socket on `admin_host` (loopback by default).
    for host, port, reuse in (
        (config.host, config.port, True),
        (config.admin_host, admin_port, False),
    ):
        try:
            sockets.append(bind(host, port, reuse))
        except OSError as exc:
            raise errors.UsageError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None
    engine = Engine(
        config,
        routing_file=config.state_dir / f"routing-{index}.json",
        loaded_file=config.state_dir / f"loaded-{index}.json",
        desired_file=config.state_dir / desired.FILE,
    )
    engine.serve_admin_on(sockets[1].getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(
            engine,
            http=protocol.configure(config),  # httptools with the connection limits
            ws="none",
            loop="none",  # already running on uvloop
            lifespan="on",
            access_log=False,
            log_level=config.log_level,
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=10,
        )
    )
    watcher = asyncio.create_task(_announce(server, config, index, admin_port))
    stopper = asyncio.create_task(_stop_loading_on_exit(server, engine))
    try:
        await server.serve(sockets=sockets)
    finally:
        watcher.cancel()
        stopper.cancel()
        with contextlib.suppress(FileNotFoundError):
            state_path(config, index).unlink()


async def _announce(server: uvicorn.Server, config: ServeConfig, index: int, port: int) -> None:
    while not server.started:
        await asyncio.sleep(0.01)
    _write_state(config, index, port)


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


def run(config: ServeConfig, index: int) -> None:
    """Serve until SIGTERM or SIGINT (uvicorn installs the handlers and shuts down cleanly)."""
    import uvloop

    logging.basicConfig(
        level=config.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    # uvicorn re-raises the signal that stopped it once it has shut down; with no-op handlers
    # underneath, that ends in a clean return (exit 0) instead of death by signal.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    protocol.tune_gc()  # after every import: the start-up heap is never walked again
    uvloop.run(_serve(config, index))
    _leave_stuck_threads(EXIT_GRACE_SECONDS)


def _die_with_parent() -> None:
    # Linux only: if the supervisor is killed outright, take the worker down too.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


if __name__ == "__main__":
    _die_with_parent()
    try:
        run(ServeConfig.from_json(sys.argv[1]), int(sys.argv[2]))
    except errors.MlopsError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        sys.exit(1)
