"""Atomic file replacement: after a crash a reader finds the old file or the new one, whole.

Every state file of mlops (plans, the journal's pointer, applied records, the engine's
records, routing and loaded tables, reports) is written through here. Below every layer and
free of mlops imports, so the controller and the engine (mlops.serving) can both use it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

# A directory fsync is refused by some filesystems; the rename itself has then happened.
_DIR_FSYNC_UNSUPPORTED = (errno.EINVAL, errno.ENOTSUP, errno.EBADF)


@contextlib.contextmanager
def atomic_writer(
    path: str | os.PathLike[str], *, mode: int = 0o644, exclusive: bool = False
) -> Iterator[BinaryIO]:
    """A binary file to write `path`'s new content to; it replaces `path` when the block ends.

    The content goes to a temporary file of a unique name in the same directory (so two
    writers never share one), is flushed and fsynced, renamed over `path`, and the directory
    is fsynced. If the block raises, `path` is untouched and the temporary file removed.
    `mode` is the new file's permission bits (minus the umask, like any created file); it is
    set at creation, so the file is never more open than that. With `exclusive`, `path` is
    only created, never replaced: FileExistsError if it exists (the content is complete
    before the name appears, unlike O_EXCL on the final name).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp, fd = _create_temporary(target, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            os.link(tmp, target)  # atomic create-if-absent
        else:
            os.replace(tmp, target)
    finally:
        # After a rename the temporary name is gone; after a link or a failure it is not.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(target.parent)


def atomic_write(
    path: str | os.PathLike[str],
    data: bytes | str,
    *,
    mode: int = 0o644,
    exclusive: bool = False,
) -> None:
    """Replace `path` with `data` (str is written as UTF-8); see atomic_writer."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_writer(path, mode=mode, exclusive=exclusive) as handle:
        handle.write(payload)


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename or a new name in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


def _create_temporary(target: Path, mode: int) -> tuple[Path, int]:
    """A new file beside `target` (O_EXCL: never one another writer already has open)."""
    for _ in range(100):
        # The name is cut so that the temporary one stays within NAME_MAX (255 bytes).
        tmp = target.with_name(f".{target.name[:200]}.{secrets.token_hex(6)}.tmp")
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(target.parent))
