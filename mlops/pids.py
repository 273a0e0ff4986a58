"""Whether a process id on this host still names a process (lock and registry owners).

Below every layer and free of mlops imports, so apply/ and providers/ can both use it.
"""

from __future__ import annotations

import os


def pid_exists(pid: int) -> bool:
    """Signal 0 reaches `pid`: it exists (a zombie too). EPERM means it exists as another
    user's process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pid_running(pid: int) -> bool:
    """Like pid_exists, but a zombie (exited, not yet reaped) counts as dead."""
    if not pid_exists(pid):
        return False
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True
