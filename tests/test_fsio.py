"""mlops.fsio: the one atomic write every state file goes through."""

from __future__ import annotations

import ast
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops import fsio

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_content_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    fsio.atomic_write(path, b"x" * 10_000)
    fsio.atomic_write(path, "short")
    assert path.read_bytes() == b"short"
    assert _leftovers(tmp_path) == []


def test_creates_missing_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "state.json"
    fsio.atomic_write(path, "{}")
    assert path.read_text() == "{}"


@pytest.mark.usefixtures("umask_022")
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644])
def test_mode_is_honoured_also_when_replacing(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "token"
    path.write_text("old")
    path.chmod(0o666)
    fsio.atomic_write(path, "new", mode=mode)
    assert stat.S_IMODE(path.stat().st_mode) == mode


@pytest.mark.usefixtures("umask_022")
def test_mode_is_never_more_open_than_the_umask_allows(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    fsio.atomic_write(path, "x", mode=0o666)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_exclusive_creates_once_and_never_replaces(tmp_path: Path) -> None:
    path = tmp_path / "admin-token"
    fsio.atomic_write(path, "first", mode=0o600, exclusive=True)
    with pytest.raises(FileExistsError):
        fsio.atomic_write(path, "second", mode=0o600, exclusive=True)
    assert path.read_text() == "first"
    assert _leftovers(tmp_path) == []


def test_a_failure_mid_write_keeps_the_old_file_and_removes_the_temporary(
    tmp_path: Path,
) -> None:
    path = tmp_path / "routing.json"
    fsio.atomic_write(path, "old")

    def chunks() -> Iterator[bytes]:
        yield b"half of the new"
        raise RuntimeError("the data source failed")

    with pytest.raises(RuntimeError, match="data source failed"), fsio.atomic_writer(path) as out:
        for chunk in chunks():
            out.write(chunk)
    assert path.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_data_that_cannot_be_encoded_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    fsio.atomic_write(path, "old")
    with pytest.raises(UnicodeEncodeError):
        fsio.atomic_write(path, "lone surrogate \udc80")
    assert path.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_a_failed_rename_removes_the_temporary(tmp_path: Path) -> None:
    # A non-empty directory in the way: the rename fails after the content was written.
    path = tmp_path / "state.json"
    path.mkdir()
    (path / "inside").write_text("keep")
    with pytest.raises(OSError):
        fsio.atomic_write(path, "new")
    assert (path / "inside").read_text() == "keep"
    assert _leftovers(tmp_path) == []


def test_concurrent_writers_never_produce_a_mixed_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.json"
    size = 256 * 1024  # several write() calls' worth: a shared temporary would interleave
    payloads = [bytes([ord("a") + i]) * size for i in range(6)]
    fsio.atomic_write(path, payloads[0])
    errors: list[BaseException] = []
    seen: set[bytes] = set()
    done = threading.Event()

    def writer(payload: bytes) -> None:
        try:
            for _ in range(40):
                fsio.atomic_write(path, payload)
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        while not done.is_set():
            content = path.read_bytes()
            if content not in payloads:
                seen.add(content[:16] + b"..." + content[-16:])

    threads = [threading.Thread(target=writer, args=(p,)) for p in payloads]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    watcher.join()
    assert errors == []
    assert seen == set(), "a reader saw a file that no single writer wrote"
    assert path.read_bytes() in payloads
    assert _leftovers(tmp_path) == []


_KILLED_WRITER = """
import sys
from mlops import fsio
path, ready = sys.argv[1], sys.argv[2]
payloads = [bytes([c]) * 300_000 for c in b"AB"]
for i in range(10**9):
    fsio.atomic_write(path, payloads[i % 2])
    if i == 3:
        open(ready, "w").close()
"""


def test_a_killed_writer_leaves_the_old_or_the_new_file(tmp_path: Path) -> None:
    path = tmp_path / "state.bin"
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(path), str(ready)], cwd=ROOT)
    try:
        while not ready.exists():
            assert proc.poll() is None, "the writer exited early"
            threading.Event().wait(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert path.read_bytes() in (b"A" * 300_000, b"B" * 300_000)


def _replace_calls(source: str) -> list[int]:
    """Lines of os.replace / os.rename / Path.replace / Path.rename calls."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in ("replace", "rename"):
            continue
        owner = node.func.value
        # str.replace(old, new) takes two arguments, dataclasses.replace keywords; a rename
        # takes one target.
        is_os = isinstance(owner, ast.Name) and owner.id == "os"
        if is_os or (len(node.args) == 1 and not node.keywords):
            lines.append(node.lineno)
    return lines


def test_state_files_are_replaced_only_through_fsio() -> None:
    # Downloads in providers/images rename their own partial files; everything else that
    # replaces a file goes through mlops.fsio.
    exempt = {ROOT / "mlops" / "fsio.py"} | set((ROOT / "mlops/providers/images").rglob("*.py"))
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted((ROOT / "mlops").rglob("*.py"))
        if path not in exempt
        for line in _replace_calls(path.read_text(encoding="utf-8"))
    ]
    assert found == []
