"""The journal on a disk that fills up (issue 15, faults), without the e2e set-up: a real
256 KiB tmpfs (root; CI runs as root) holding the journal directory.

Regression: a short write (ENOSPC part-way through an entry) left a torn line, and the next
append after space was freed followed it, so the journal read as corrupt; an append that
failed raised a bare OSError ("Internal error"). Now a failed append leaves the file at its
last whole entry and raises a one-line MlopsError, and appends work again once there is room.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlops import errors
from mlops.apply import journal
from tests.apply.test_journal import _plan
from tests.faults.conftest import can_mount, free_disk, full_tmpfs

pytestmark = pytest.mark.skipif(
    not can_mount() and not os.environ.get("CI"), reason="needs root to mount a tmpfs"
)


def test_full_disk_leaves_only_whole_entries(tmp_path: Path) -> None:
    state = tmp_path / "state"
    directory = state / journal.JOURNAL_DIR
    with full_tmpfs(directory) as fill:
        run = journal.Journal.create(state, _plan(), source="plan.json")
        fill()
        # Entries larger than what is left of the file's last page: some bytes may fit.
        big = "x" * 3000
        failures = 0
        for index in range(20):
            try:
                run.append(journal.Event.NOTE, message=big, index=index)
            except errors.MlopsError as exc:
                failures += 1
                assert "No space left on device" in exc.message
                assert "re-run the same apply" in exc.message
        assert failures > 0
        reread = journal.Journal(directory, run.run_id)  # raises on a torn middle line
        assert [e.seq for e in reread.entries] == list(range(1, len(reread.entries) + 1))
        text = run.path.read_text()
        assert text.endswith("\n")
        free_disk(directory)
        resumed = journal.Journal(directory, run.run_id)
        resumed.append(journal.Event.NOTE, message="after space was freed")
        again = journal.Journal(directory, run.run_id)
        assert again.entries[-1].data["message"] == "after space was freed"


def test_no_room_for_a_new_run_is_a_one_line_error(tmp_path: Path) -> None:
    state = tmp_path / "state"
    directory = state / journal.JOURNAL_DIR
    with full_tmpfs(directory) as fill:
        fill()
        with pytest.raises(errors.MlopsError, match="cannot write the journal"):
            journal.Journal.create(state, _plan(), source="plan.json")
