"""The file under a store, watched: deleted, replaced or truncated while the app writes to it.

A connection keeps writing to the file it opened: after ``rm`` into an unlinked inode, after
``mv other.db`` into the old one, after ``truncate`` into a WAL whose base is gone. Each batch
first compares the file with what was opened (one ``stat``), so a change is found before
the next write instead of never.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Optional

_MAGIC = b"SQLite format 3\x00"
_HEADER_BYTES = 100


class StoreFile:
    """The identity (inode, size) of a store's file since it was opened."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._inode: Optional[int] = None
        self._size = 0

    def opened(self) -> None:
        """A connection was just opened on the file: remember it as it is now."""
        self._inode, self._size = _identity(self.path)

    def change(self) -> Optional[str]:
        """``deleted``, ``replaced`` or ``truncated`` since ``opened``; None: the same file.

        A file that shrank below a header, or shrank and does not start as an SQLite file,
        was truncated or overwritten; one that shrank and still is a database was vacuumed
        by someone, which is fine.
        """
        inode, size = _identity(self.path)
        if inode is None:
            return "deleted"
        if inode != self._inode:
            return "replaced"
        if size < _HEADER_BYTES or (size < self._size and not _is_sqlite(self.path)):
            return "truncated"
        self._size = size
        return None

    def remove(self) -> None:
        """Delete the file and its WAL and shared-memory files (their base is gone)."""
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                os.unlink(f"{self.path}{suffix}")


def _identity(path: Path) -> tuple[Optional[int], int]:
    """The file's inode (None when it is missing) and size."""
    try:
        stat = os.stat(path)
    except OSError:
        return None, 0
    return stat.st_ino, stat.st_size


def _is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as file:
            return file.read(len(_MAGIC)) == _MAGIC
    except OSError:
        return False
