"""A traffic-splitting HTTP gateway on loopback: Debian's nginx, one master process per state
directory, its configuration rendered from a route table (routes.py) and applied by reload.

- The port is chosen by the kernel: we bind 127.0.0.1:0 ourselves and hand the listening
  socket to nginx (nginx's own `NGINX=fd;` inheritance, the mechanism of its binary upgrade),
  so no other program can take the port between choosing and listening.
- nginx runs in the foreground (`daemon off`) in a session of its own, so it outlives the
  `mlops` command that started it; `STATE_DIR/gateway.json` records its pid, start time and
  port, and a later `Gateway(STATE_DIR).start()` finds it again instead of starting another.
- `configure` writes the new configuration, checks it with `nginx -t`, sends SIGHUP and
  returns only when the new generation answers and every worker of the old configuration has
  exited: from then on every request goes by the new table. Old workers finish their
  in-flight requests first, so a backend set to weight 0 by `configure` has nothing in flight
  when it returns and can be stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from mlops import errors, fsio, pids
from mlops.providers.gateway import routes as routes_mod

PACKAGES = ("nginx",)
INSTALL_TIMEOUT_S = 600.0
START_TIMEOUT_S = 20.0
RELOAD_TIMEOUT_S = 90.0  # until the new generation answers
NUDGE_AFTER_S = 2.0  # an old worker not shutting down by then is sent the quit itself
STOP_TIMEOUT_S = 20.0
STATE_FILE = "gateway.json"
MAX_STATE_BYTES = 4096
NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx")


def binary() -> str | None:
    for candidate in NGINX_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def install() -> str:
    """nginx's path; apt-get installs Debian's nginx first when it is missing (root only).
    The package's service is never started: a policy-rc.d refusing it is in place during the
    install when the system has none."""
    found = binary()
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise errors.ConfigError(
            "the gateway needs nginx: install Debian's nginx "
            "(as root: apt-get install --no-install-recommends nginx)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:  # refuse the package's `invoke-rc.d nginx start` (it would bind port 80)
        policy.write_text("#!/bin/sh\n# written by mlops while installing nginx\nexit 101\n")
        policy.chmod(0o755)
    try:
        for command in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
        ):
            done = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S
            )
            if done.returncode != 0:
                raise errors.ConfigError(f"{' '.join(command[:2])} failed: {_tail(done.stderr)}")
    finally:
        if ours:
            policy.unlink(missing_ok=True)
    found = binary()
    if found is None:
        raise errors.ConfigError("apt-get installed nginx but no nginx binary is on PATH")
    return found


@dataclass(frozen=True)
class _Record:
    pid: int
    create_time: float
    port: int
    generation: int
    host: str = "127.0.0.1"


class Gateway:
    """nginx on 127.0.0.1:<kernel-chosen port>, everything under `state_dir`."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.conf_file = self.state_dir / "conf" / "nginx.conf"
        self.state_file = self.state_dir / STATE_FILE
        self.error_log = self.state_dir / "logs" / "error.log"
        self.routes: list[routes_mod.Route] = []

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT of the running gateway (ConfigError when it does not run)."""
        record = self._running()
        if record is None:
            raise errors.ConfigError(f"the gateway of {self.state_dir} is not running")
        return f"http://{record.host}:{record.port}"

    def running(self) -> bool:
        return self._running() is not None

    def start(self, *, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start nginx (or find the one this state dir already runs); its base URL. A new
        gateway has no routes: every path answers 404 until `configure`. It listens on
        `host` (an IPv4 address) and `port`; 0, the default, lets the kernel choose."""
        record = self._running()
        if record is not None:
            return f"http://{record.host}:{record.port}"
        try:
            socket.inet_aton(host)
        except OSError:
            raise errors.ConfigError(
                f"the gateway listens on an IPv4 address, not {host!r}"
            ) from None
        if not 0 <= port < 65536:
            raise errors.ConfigError(f"gateway port {port} is not in [0, 65535]")
        nginx = install()
        for sub in ("conf", "logs", "temp"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listener.bind((host, port))
            except OSError as exc:
                raise errors.ConfigError(
                    f"the gateway cannot listen on {host}:{port}: {exc.strerror}"
                ) from None
            listener.listen(511)
            port = int(listener.getsockname()[1])
            self.routes = []
            self._write_conf([], host, port, 1)
            self._check_conf(nginx)
            fd = listener.fileno()
            with (self.state_dir / "logs" / "nginx.out").open("ab") as out:
                proc = subprocess.Popen(
                    [nginx, "-p", str(self.state_dir), "-c", str(self.conf_file),
                     "-e", str(self.error_log)],
                    env={**os.environ, "NGINX": f"{fd};"},
                    pass_fds=(fd,),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
        finally:
            listener.close()  # nginx has its own copy of the socket now
        record = _Record(proc.pid, _create_time(proc.pid), port, 1, host)
        self._save(record)
        try:
            self._wait_generation(record, time.monotonic() + START_TIMEOUT_S, proc)
        except BaseException:
            self._kill(record)
            raise
        return f"http://{host}:{port}"

    def stop(self) -> bool:
        """Graceful stop (in-flight requests finish); True when a gateway was running."""
        record = self._running()
        if record is None:
            self.state_file.unlink(missing_ok=True)
            return False
        self._kill(record)
        return True

    # -- configuration -----------------------------------------------------------------------

    def configure(self, routes: Sequence[routes_mod.Route]) -> int:
        """Put `routes` in force (replacing the whole table); the new generation. Returns once
        no worker of an older table is left, so nothing is in flight to a backend the new
        table no longer names. An invalid table raises ConfigError and changes nothing."""
        table = list(routes)
        routes_mod.check_table(table)
        record = self._running()
        if record is None:
            raise errors.ConfigError(f"the gateway of {self.state_dir} is not running")
        nginx = install()
        generation = record.generation + 1
        previous = self.conf_file.read_bytes() if self.conf_file.exists() else None
        self._write_conf(table, record.host, record.port, generation)
        try:
            self._check_conf(nginx)
        except errors.ConfigError:
            if previous is not None:
                fsio.atomic_write(self.conf_file, previous)
            raise
        old_workers = set(_workers(record.pid))
        record = dataclasses.replace(record, generation=generation)
        self._save(record)
        os.kill(record.pid, signal.SIGHUP)
        self._wait_generation(record, time.monotonic() + RELOAD_TIMEOUT_S, None)
        self._retire_workers(old_workers, record, generation)
        self.routes = table
        return generation

    def _retire_workers(self, old: set[int], record: _Record, generation: int) -> None:
        """Wait until the workers of the previous table have exited. nginx's master tells
        them to finish their requests and quit; one that a busy machine left running its old
        table (not "shutting down" after a grace period) is sent that same graceful quit
        here, and one still there after nginx's own shutdown timeout is terminated, as nginx
        itself would close its connections then."""
        start = time.monotonic()
        nudged: set[int] = set()
        terminated: set[int] = set()
        while left := old & set(_workers(record.pid)):
            waited = time.monotonic() - start
            for pid in left:
                if pid not in nudged and waited > NUDGE_AFTER_S and not _shutting_down(pid):
                    nudged.add(pid)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGQUIT)
                if pid not in terminated and waited > routes_mod.WORKER_SHUTDOWN_S + 5:
                    terminated.add(pid)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGTERM)
            if waited > routes_mod.WORKER_SHUTDOWN_S + 5 + STOP_TIMEOUT_S:
                raise errors.TransientError(
                    f"gateway generation {generation} is in force but workers of the previous "
                    f"one ({sorted(left)}) still run after {waited:.0f}s: {_tail(self._log(), 5)}"
                )
            time.sleep(0.02)

    @property
    def generation(self) -> int:
        record = self._read()
        return record.generation if record else 0

    # -- internals ---------------------------------------------------------------------------

    def _write_conf(
        self, table: Sequence[routes_mod.Route], host: str, port: int, generation: int
    ) -> None:
        # nginx workers of a root master run as `nobody` unless told otherwise; ours run as
        # the user who started the gateway, who owns the state dir.
        user = None
        if os.geteuid() == 0:
            import grp
            import pwd

            user = f"{pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name}"
        text = routes_mod.render(
            table,
            host=host,
            port=port,
            prefix=str(self.state_dir),
            generation=generation,
            user=user,
        )
        fsio.atomic_write(self.conf_file, text)

    def _check_conf(self, nginx: str) -> None:
        with tempfile.TemporaryDirectory() as scratch:
            done = subprocess.run(
                [nginx, "-t", "-q", "-p", str(self.state_dir), "-c", str(self.conf_file),
                 "-e", os.path.join(scratch, "error.log")],
                capture_output=True,
                text=True,
                timeout=30,
            )  # fmt: skip
        if done.returncode != 0:
            raise errors.ConfigError(f"nginx refused the gateway configuration: {done.stderr}")

    def _wait_generation(
        self, record: _Record, deadline: float, proc: subprocess.Popen[bytes] | None
    ) -> None:
        """Until a new connection is answered by a worker of `record.generation`."""
        url = f"http://{record.host}:{record.port}/_gateway/generation"
        want = str(record.generation)
        last = "no answer"
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise errors.ConfigError(f"nginx exited at start: {_tail(self._log(), 10)}")
            try:
                # A fresh connection per probe: only those reach the newest workers.
                with httpx.Client(timeout=2.0) as http:
                    reply = http.get(url, headers={"connection": "close"})
                last = reply.text.strip()[:40]
                if reply.status_code == 200 and last == want:
                    return
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.02)
        raise errors.TransientError(
            f"the gateway did not put generation {want} in force (last answer {last!r}): "
            f"{_tail(self._log(), 5)}"
        )

    def _log(self) -> str:
        try:
            return self.error_log.read_text(errors="replace")
        except OSError:
            return ""

    def _save(self, record: _Record) -> None:
        fsio.atomic_write(self.state_file, json.dumps(record.__dict__, sort_keys=True))

    def _read(self) -> _Record | None:
        try:
            raw = self.state_file.read_bytes()[:MAX_STATE_BYTES]
            doc: Any = json.loads(raw)
            record = _Record(
                int(doc["pid"]),
                float(doc["create_time"]),
                int(doc["port"]),
                int(doc["generation"]),
                str(doc.get("host", "127.0.0.1")),
            )
            socket.inet_aton(record.host)
            return record
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise errors.ConfigError(
                f"gateway record {self.state_file} is unreadable ({exc}); stop its nginx by "
                "hand if one runs, then remove the file"
            ) from None

    def _running(self) -> _Record | None:
        record = self._read()
        if record is None:
            return None
        if not pids.pid_running(record.pid) or _create_time(record.pid) != record.create_time:
            return None  # gone, or the pid now names another process
        return record

    def _kill(self, record: _Record) -> None:
        import psutil

        try:
            proc = psutil.Process(record.pid)
            family = [proc, *proc.children()]
        except psutil.Error:
            family = []
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGQUIT)  # graceful: in-flight requests finish
        _, alive = psutil.wait_procs(family, timeout=STOP_TIMEOUT_S)
        for left in alive:
            with contextlib.suppress(psutil.Error):
                left.kill()
        psutil.wait_procs(alive, timeout=5)
        self.state_file.unlink(missing_ok=True)


def _create_time(pid: int) -> float:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return 0.0


def _workers(master: int) -> list[int]:
    """Worker pids of the nginx master `master` (old ones included while they drain)."""
    import psutil

    try:
        children = psutil.Process(master).children()
    except psutil.Error:
        return []
    alive = []
    for child in children:
        with contextlib.suppress(psutil.Error):  # gone in between: not a worker any more
            if child.status() != psutil.STATUS_ZOMBIE:  # exited, not yet reaped
                alive.append(child.pid)
    return alive


def _shutting_down(pid: int) -> bool:
    """True when nginx titled the worker as finishing its requests before it exits."""
    import psutil

    try:
        return "shutting down" in " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return True  # gone: nothing to tell it


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
