"""A base image made without pulling anything: `debootstrap --variant=minbase` of the Debian
release this machine runs, with python3, from the machine's own apt mirror.

The root filesystem is built once (about a minute) and cached as a tarball under the cache
directory; `publish` imports it and pushes it to a registry, and returns the base pinned by
the manifest digest read back, to be used exactly like a user's `python:3.12-slim@sha256:...`.
The local copy is removed after the push, so the builder pulls the base by digest as it would
a remote one.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import docker
import docker.errors
import filelock

from mlops.providers.images import errors as image_errors
from mlops.providers.images import registry as oci

DEBOOTSTRAP_TIMEOUT_S = 1200.0
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# What a slim Python image leaves out too: package lists and archives, docs, man pages.
TRIM = (
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
)


def suite() -> str:
    text = Path("/etc/os-release").read_text()
    found = re.search(r"^VERSION_CODENAME=\"?([a-z]+)", text, re.MULTILINE)
    if found is None:
        raise image_errors.ImageBuildError("this machine's /etc/os-release names no Debian suite")
    return found.group(1)


def mirror() -> str:
    """The first Debian archive the machine's apt sources use (deb822 or one-line style)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file() or path.suffix not in ("", ".list", ".sources"):
            continue
        text = path.read_text(errors="replace")
        for url in re.findall(r"^(?:URIs:|deb)\s+(\S+)", text, re.MULTILINE):
            if url.rstrip("/").endswith("/debian"):
                return str(url)
    return DEFAULT_MIRROR


def rootfs(cache: Path) -> Path:
    """CACHE/base/debian-SUITE-ARCH-python3.tar, made once (a lock keeps runs from racing)."""
    directory = cache / "base"
    directory.mkdir(parents=True, exist_ok=True)
    name = f"debian-{suite()}-{platform.machine()}-python3"
    tarball = directory / f"{name}.tar"
    with filelock.FileLock(str(directory / f"{name}.lock")):
        if tarball.is_file():
            return tarball
        if shutil.which("debootstrap") is None or os.geteuid() != 0:
            raise image_errors.ImageBuildError("an offline base image needs debootstrap and root")
        tree = directory / f"{name}.tree"
        shutil.rmtree(tree, ignore_errors=True)
        command = [
            "debootstrap",
            "--variant=minbase",
            "--include=python3",
            suite(),
            str(tree),
            mirror(),
        ]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=DEBOOTSTRAP_TIMEOUT_S
        )
        if done.returncode != 0:
            shutil.rmtree(tree, ignore_errors=True)
            log = (done.stdout + done.stderr).strip().splitlines()
            raise image_errors.ImageBuildError("debootstrap failed:\n" + "\n".join(log[-15:]))
        for part in TRIM:
            for child in (tree / part).glob("*"):
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        partial = directory / f"{name}.tar.part"
        subprocess.run(
            ["tar", "--numeric-owner", "--sort=name", "-C", str(tree), "-cf", str(partial), "."],
            check=True,
            capture_output=True,
        )
        shutil.rmtree(tree)
        os.replace(partial, tarball)
    return tarball


def publish(client: docker.DockerClient, registry: str, tarball: Path) -> str:
    """Import `tarball` as an image, push it to `registry` (host:port) and return
    REGISTRY/mlops-base@sha256:... as the registry stores it."""
    digest = hashlib.sha256()
    with tarball.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    repository = f"{registry}/mlops-base"
    tag = f"{tarball.stem.split('-')[1]}-{digest.hexdigest()[:12]}"
    try:
        answer = client.api.import_image(src=str(tarball), repository=repository, tag=tag)
        found = re.search(r'"id"\s*:\s*"(sha256:[0-9a-f]{64})"', str(answer))
        if found is None:
            raise image_errors.ImageBuildError(f"importing the base failed: {answer!s:.300}")
        # podman's compat import names the image REPOSITORY:latest whatever tag is asked.
        client.images.get(found.group(1)).tag(repository, tag)
        for chunk in client.api.push(repository, tag=tag, stream=True, decode=True):
            if chunk.get("error"):
                raise image_errors.ImageBuildError(f"pushing the base failed: {chunk['error']}")
        for name in client.images.get(found.group(1)).tags:
            client.images.remove(name)
    except docker.errors.DockerException as exc:
        raise image_errors.ImageBuildError(f"importing the base failed: {exc}") from exc
    with oci.RegistryClient(registry) as reader:
        manifest = reader.manifest("mlops-base", tag)
    if manifest is None:
        raise image_errors.ImageBuildError(f"{repository}:{tag} is not in the registry after push")
    return f"{repository}@{manifest.digest}"
