"""What goes into the engine layers: the wheels of the engine's runtime dependencies for the
base image's Python, and a wheel of mlops itself. Both are made on the host (the build has no
network) and cached, so a new model version never downloads or builds anything.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import mlops
from mlops.providers.images import errors as image_errors

# Distributions `python -m mlops serve` imports at run time, and nothing else: no pip, no
# compilers, no controller packages (mlflow, kubernetes, ...). tests/images checks this list
# against what the engine really imports.
ENGINE_DISTRIBUTIONS = (
    "annotated-types",
    "click",
    "h11",
    "httptools",
    "numpy",
    "onnxruntime",
    "orjson",
    "prometheus-client",
    "pydantic",
    "pydantic-core",
    "semver",
    "typing-extensions",
    "typing-inspection",
    "uvicorn",
    "uvloop",
)
PIP_TIMEOUT_S = 900.0
_SOURCE_FILES = ("pyproject.toml", "README.md")


@dataclass(frozen=True)
class Target:
    """The base image's interpreter, as probed inside it."""

    major: int
    minor: int
    machine: str  # x86_64, aarch64
    glibc: tuple[int, int]

    @property
    def tag(self) -> str:
        return f"cp{self.major}{self.minor}-{self.machine}-glibc{self.glibc[0]}.{self.glibc[1]}"

    def platforms(self) -> list[str]:
        """Every manylinux tag this glibc can run (newest first), for `pip download`."""
        found = [f"manylinux_2_{m}_{self.machine}" for m in range(self.glibc[1], 4, -1)]
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        found += [f"{name}_{self.machine}" for m, name in legacy.items() if self.glibc[1] >= m]
        return found


def pins() -> list[str]:
    """ENGINE_DISTRIBUTIONS at the versions installed here: the engine that was tested."""
    found = []
    for name in ENGINE_DISTRIBUTIONS:
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError as exc:
            raise image_errors.ImageBuildError(
                f"{name} is not installed here; the engine image pins the versions mlops runs with"
            ) from exc
    return found


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def wheelhouse(cache: Path, target: Target, requirements: list[str]) -> list[Path]:
    """The wheels of `requirements` (name==version, no dependencies resolved: the list is
    complete) for `target`, downloaded once into CACHE/wheels/TAG/ (pip's own cache and
    configured indexes serve repeats). Returns the files in requirement order."""
    directory = cache / "wheels" / target.tag
    directory.mkdir(parents=True, exist_ok=True)
    wanted = {_normalize(r.split("==")[0]): r.split("==")[1] for r in requirements}
    have = _match(directory, wanted)
    if len(have) < len(wanted):
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--no-deps", "--only-binary=:all:", "--dest", str(directory),
            "--implementation", "cp", "--python-version", f"{target.major}.{target.minor}",
            "--abi", f"cp{target.major}{target.minor}",
            *[arg for platform in target.platforms() for arg in ("--platform", platform)],
            *requirements,
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        if done.returncode != 0:
            raise image_errors.ImageBuildError(
                f"could not download the engine's wheels for {target.tag}: "
                f"{_tail(done.stderr or done.stdout)}"
            )
        have = _match(directory, wanted)
    missing = sorted(set(wanted) - set(have))
    if missing:
        raise image_errors.ImageBuildError(f"no wheel for {', '.join(missing)} ({target.tag})")
    return [have[name] for name in wanted]


def _match(directory: Path, wanted: dict[str, str]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(directory.glob("*.whl")):
        name, version = path.name.split("-")[:2]
        if wanted.get(_normalize(name)) == version:
            found.setdefault(_normalize(name), path)
    return found


def pip_wheel(cache: Path, target: Target) -> Path:
    """pip itself, only to install the others in the build stage (it never reaches the image)."""
    version = metadata.version("pip")
    return wheelhouse(cache, target, [f"pip=={version}"])[0]


def source_root() -> Path:
    """The mlops source tree this process runs from (an editable or in-tree install)."""
    root = Path(mlops.__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file():
        raise image_errors.ImageBuildError(
            f"engine images are built from the mlops source tree; {root} has no pyproject.toml "
            "(install mlops with `pip install -e` from a checkout)"
        )
    return root


@functools.cache
def snapshot(root: Path) -> tuple[tuple[str, bytes], ...]:
    """(relative path, bytes) of everything the mlops wheel is built from, read once per
    process: the engine shipped is the code this process started with, even if the checkout
    changes meanwhile."""
    files = [root / name for name in _SOURCE_FILES if (root / name).is_file()]
    for path in sorted((root / "mlops").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files.append(path)
    return tuple((str(path.relative_to(root)), path.read_bytes()) for path in files)


def source_digest(root: Path) -> str:
    """sha256 over the paths and bytes of the snapshot."""
    digest = hashlib.sha256()
    for name, data in snapshot(root):
        digest.update(name.encode() + b"\0")
        digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()


def engine_wheel(cache: Path) -> Path:
    """`pip wheel --no-deps` of the mlops source, built once per source digest. The build
    runs on a copy of the tree so the checkout gets no build/ directory."""
    root = source_root()
    directory = cache / "engine" / source_digest(root)[:24]
    built = sorted(directory.glob("mlops-*.whl"))
    if built:
        return built[0]
    with tempfile.TemporaryDirectory(prefix="mlops-wheel-") as tmp:
        source = Path(tmp) / "src"
        for name, data in snapshot(root):
            target = source / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        out = Path(tmp) / "out"
        command = [
            sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
            "--no-deps", "--wheel-dir", str(out), str(source),
        ]  # fmt: skip
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, cwd=tmp
        )
        wheels = sorted(out.glob("mlops-*.whl"))
        if done.returncode != 0 or not wheels:
            raise image_errors.ImageBuildError(
                f"could not build the mlops wheel: {_tail(done.stderr or done.stdout)}"
            )
        directory.mkdir(parents=True, exist_ok=True)
        partial = directory / (wheels[0].name + ".part")
        shutil.copyfile(wheels[0], partial)
        os.replace(partial, directory / wheels[0].name)
    return directory / wheels[0].name


def _tail(text: str, lines: int = 15) -> str:
    kept = [line for line in text.strip().splitlines() if "is ignored: it is neither" not in line]
    return "\n".join(kept[-lines:])
