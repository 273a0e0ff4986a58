"""Workspace lock: exclusive, names its holder, never released by anyone but its id."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlops import errors
from mlops.apply import lock


def test_second_acquire_fails_fast_naming_the_holder(tmp_path: Path) -> None:
    with lock.acquire(tmp_path, plan="plans/a.json") as held:
        with pytest.raises(errors.LockHeldError) as caught:
            lock.acquire(tmp_path)
        assert held.info.id in caught.value.message
        assert f"pid {os.getpid()}" in caught.value.message
        assert "plans/a.json" in caught.value.message
    assert lock.read(tmp_path) is None


def test_lock_records_holder_and_since(tmp_path: Path) -> None:
    held = lock.acquire(tmp_path, plan="p.json")
    info = lock.read(tmp_path)
    assert info == held.info
    assert info.pid == os.getpid() and info.alive is True
    held.release()


def test_dead_holder_is_reported_stale_but_kept(tmp_path: Path) -> None:
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "from mlops.apply import lock; import sys, pathlib;"
            "print(lock.acquire(pathlib.Path(sys.argv[1])).info.id)",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    lock_id = child.stdout.strip()
    with pytest.raises(errors.LockHeldError, match=f"mlops unlock {lock_id}"):
        lock.acquire(tmp_path)
    assert lock.read(tmp_path) is not None  # no automatic release
    with pytest.raises(errors.UsageError, match="does not match"):
        lock.unlock(tmp_path, "wrong")
    assert lock.unlock(tmp_path, lock_id).id == lock_id
    lock.acquire(tmp_path).release()


def test_release_does_not_remove_someone_elses_lock(tmp_path: Path) -> None:
    first = lock.acquire(tmp_path)
    lock.unlock(tmp_path, first.info.id)
    second = lock.acquire(tmp_path)
    first.release()
    assert lock.read(tmp_path) == second.info
    second.release()


def test_unlock_when_not_locked(tmp_path: Path) -> None:
    with pytest.raises(errors.UsageError, match="not locked"):
        lock.unlock(tmp_path, "abc")


def test_timeout_waits_then_fails(tmp_path: Path) -> None:
    with lock.acquire(tmp_path), pytest.raises(errors.LockHeldError):
        lock.acquire(tmp_path, timeout=0.3, poll=0.05)
