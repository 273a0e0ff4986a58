"""Local container services for image builds: podman's Docker-compatible API on a Unix socket
and Debian's `docker-registry` (the OCI distribution server) on loopback.

Everything lives under one directory of the caller's (configs, sockets, logs, registry blobs);
the system's /etc/containers is never edited: the podman service reads our files through the
CONTAINERS_* variables. Used by the tests, the benchmark and `python -m
mlops.providers.images.services up DIR` (which prints the variables to export).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from mlops import errors

# Debian packages: the podman service, its OCI runtime, the registry, and the offline base.
PACKAGES = ("podman", "buildah", "runc", "docker-registry", "debootstrap")
TOOLS = ("podman", "runc", "docker-registry", "debootstrap")
# crun fails to apply rlimits on this machine kind; runc with these limits works everywhere.
ULIMITS = (("nofile", 1024, 4096), ("nproc", 4096, 4096))
START_TIMEOUT_S = 30.0
INSTALL_TIMEOUT_S = 900.0

CONTAINERS_CONF = """\
[containers]
default_ulimits = [{ulimits}]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""
STORAGE_CONF = """\
[storage]
driver = "{driver}"
runroot = "{runroot}"
graphroot = "{graphroot}"
"""
REGISTRY_CONF = """\
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  maintenance:
    readonly:
      enabled: {readonly}
http:
  addr: 127.0.0.1:0
"""
_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def install() -> None:
    """apt-get the Debian packages when a tool is missing (root only); a no-op otherwise."""
    if not missing_tools():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise errors.ConfigError(
            f"image builds need {', '.join(missing_tools())}: install Debian's "
            f"{' '.join(PACKAGES)} (as root: apt-get install --no-install-recommends ...)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
    ):
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S
        )
        if done.returncode != 0:
            raise errors.ConfigError(f"{' '.join(command[:2])} failed: {tail(done.stderr)}")


def tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@dataclass
class Services:
    """Running services; `stop()` ends them. `registries` maps a name to its host:port."""

    root: Path
    docker_url: str
    registries: dict[str, str]
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def registry(self) -> str:
        return self.registries["default"]

    def podman(self, *args: str, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
        """The podman CLI on the same storage and configuration as the service."""
        return subprocess.run(
            ["podman", *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self.processes.clear()


def start(
    root: Path,
    *,
    storage: Path | None = None,
    registries: Sequence[str] = ("default",),
    readonly: Sequence[str] = (),
) -> Services:
    """Start one registry per name in `registries` (those in `readonly` refuse pushes) and the
    podman service, whose registries.conf marks every one of them insecure (plain HTTP).
    `storage` is podman's image store (default ROOT/storage): keep it to keep the layer cache."""
    root.mkdir(parents=True, exist_ok=True)
    services = Services(root, f"unix://{root / 'podman.sock'}", {}, {})
    try:
        for name in registries:
            services.registries[name] = _start_registry(services, name, name in readonly)
        services.env = _write_podman_config(root, storage or root / "storage", services.registries)
        _start_podman(services)
    except BaseException:
        services.stop()
        raise
    return services


def _start_registry(services: Services, name: str, readonly: bool) -> str:
    directory = services.root / f"registry-{name}"
    directory.mkdir(exist_ok=True)
    config = directory / "config.yml"
    config.write_text(
        REGISTRY_CONF.format(root=directory / "data", readonly="true" if readonly else "false")
    )
    log = directory / "registry.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=out, stderr=subprocess.STDOUT
        )
    services.processes.append(process)
    # The registry binds port 0 itself and logs the port the kernel gave it: no race.
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        found = _LISTENING.search(log.read_text(errors="replace"))
        if found:
            return f"127.0.0.1:{found.group(1)}"
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise errors.ConfigError(f"docker-registry did not start: {tail(log.read_text())}")


def storage_driver(root: Path) -> str:
    """overlay where the kernel mounts it here (a layer costs what it adds), else vfs (every
    layer and container a full copy, but it works everywhere); MLOPS_PODMAN_STORAGE_DRIVER
    chooses."""
    chosen = os.environ.get("MLOPS_PODMAN_STORAGE_DRIVER")
    if chosen in ("overlay", "vfs"):
        return chosen
    probe = root / "overlay-probe"
    dirs = [probe / name for name in ("lower", "upper", "work", "merged")]
    for directory in dirs:
        directory.mkdir(parents=True, exist_ok=True)
    options = f"lowerdir={dirs[0]},upperdir={dirs[1]},workdir={dirs[2]}"
    try:
        mounted = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", options, str(dirs[3])],
            capture_output=True,
            timeout=10,
        )
        if mounted.returncode == 0:
            subprocess.run(["umount", str(dirs[3])], capture_output=True, timeout=10)
            return "overlay"
        return "vfs"
    except (OSError, subprocess.TimeoutExpired):
        return "vfs"
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def _write_podman_config(
    root: Path, storage: Path, registries: Mapping[str, str]
) -> dict[str, str]:
    ulimits = ", ".join(f'"{name}={soft}:{hard}"' for name, soft, hard in ULIMITS)
    (root / "containers.conf").write_text(CONTAINERS_CONF.format(ulimits=ulimits))
    (root / "storage.conf").write_text(
        STORAGE_CONF.format(driver=storage_driver(root), runroot=root / "run", graphroot=storage)
    )
    insecure = "".join(
        f'\n[[registry]]\nlocation = "{address}"\ninsecure = true\n'
        for address in registries.values()
    )
    (root / "registries.conf").write_text(
        'unqualified-search-registries = []\nshort-name-mode = "permissive"\n' + insecure
    )
    return {
        "CONTAINERS_CONF": str(root / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"),
        "CONTAINERS_REGISTRIES_CONF": str(root / "registries.conf"),
    }


def _start_podman(services: Services) -> None:
    socket = services.root / "podman.sock"
    socket.unlink(missing_ok=True)
    log = services.root / "podman.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["podman", "system", "service", "--time=0", services.docker_url],
            env={**os.environ, **services.env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    services.processes.append(process)
    transport = httpx.HTTPTransport(uds=str(socket))
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client(transport=transport, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            try:
                if client.get("http://podman/_ping").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    raise errors.ConfigError(f"podman system service did not start: {tail(log.read_text())}")


def main(argv: Sequence[str] | None = None) -> int:
    """`up DIR`: install if needed, start, print `export` lines, and wait for SIGTERM/Ctrl-C."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "up":
        print("usage: python -m mlops.providers.images.services up DIR", file=sys.stderr)
        return 2
    try:
        install()
        services = start(Path(args[1]).resolve())
    except errors.MlopsError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    print(f"export DOCKER_HOST={services.docker_url}")
    print(f"export MLOPS_IMAGE_REGISTRY={services.registry}")
    for name, value in services.env.items():
        print(f"export {name}={value}")
    sys.stdout.flush()
    wanted = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    try:
        signal.sigwait(wanted)
    finally:
        services.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
