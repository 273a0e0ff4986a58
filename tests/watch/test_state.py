"""The watch's state file and its one-per-workspace lock (no engine needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlops import errors
from mlops.watch import state as watch_state


def test_state_round_trips_and_refuses_a_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "watch.json"
    assert watch_state.read(path) == watch_state.WatchState()
    state = watch_state.WatchState(
        episodes={"m@1.0.0": watch_state.Episode("m", "1.0.0", "now", ["x[0]"], True, 1)},
        outside=["version.m@1.0.0 sha256: expected 'a', found 'b'"],
    )
    watch_state.write(path, state)
    assert watch_state.read(path) == state
    path.write_text('{"format": 1, "episodes": {"m@1": {"model": "m"}}}')
    with pytest.raises(errors.UsageError, match="is malformed"):
        watch_state.read(path)
    path.write_text("not json")
    with pytest.raises(errors.UsageError, match="is unreadable"):
        watch_state.read(path)


def test_one_watch_per_workspace_and_a_stale_lock_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "watch.pid"
    with watch_state.Lock(path):
        assert path.read_text().strip() == str(os.getpid())
        with pytest.raises(errors.LockHeldError, match=f"pid {os.getpid()}"):
            watch_state.Lock(path).__enter__()
    assert not path.exists()
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    path.write_text(gone.stdout)  # a pid whose process has exited
    with watch_state.Lock(path):
        assert path.read_text().strip() == str(os.getpid())


def test_interval_is_bounded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests import support

    (tmp_path / "mlops.yaml").write_text("target: local\n")
    run = support.cli_runner(capsys)
    for bad in ("0.5s", "2d", "soon"):
        result = run("-C", str(tmp_path), "watch", "--once", "--interval", bad)
        assert result.code == 1 and "--interval" in result.err
