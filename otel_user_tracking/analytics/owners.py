"""Who holds an outbox lease: a random token per process, alive while the kernel says so.

A PID does not name a process once containers share an outbox volume: each has its own PID
namespace, so another container's sender may have our PID (its leases look like ours) or a
PID that is free here (its live leases look abandoned). An owner is a random token instead,
and it proves it lives by holding an open-file-description lock (Linux ``F_OFD_SETLK``) on
one byte of ``<outbox>-owners``, at an offset drawn from the token. The kernel drops that
lock when the process ends, however it ends (``kill -9`` too), and locks work across PID
namespaces on a shared file system, so any process can tell a dead owner at once by asking
for that byte. Where OFD locks are missing (not Linux), or the file cannot be opened, no
owner is ever taken for dead: its leases free themselves when they expire.
"""

from __future__ import annotations

import os
import secrets
import struct
import sys
from pathlib import Path
from typing import Optional

if sys.platform != "win32":
    import fcntl

_OFD = sys.platform.startswith("linux") and sys.maxsize > 2**32 and hasattr(fcntl, "F_OFD_SETLK")
_OFFSETS = 2**62  # lock offsets: far beyond any real file, never overlapping another owner's byte


def _flock(kind: int, offset: int) -> bytes:
    """A ``struct flock`` of 64-bit Linux: type, whence, start, len, pid (0 for OFD locks)."""
    return struct.pack("hhqqi4x", kind, os.SEEK_SET, offset, 1, 0)


class Owner:
    """This process's lease token, and the test of whether another token's process lives.

    Args:
        path: The outbox file; the lock file is ``<path>-owners`` beside it.
    """

    def __init__(self, path: Path) -> None:
        self._path = Path(f"{path}-owners")
        self._fd: Optional[int] = None
        self.token = ""
        self._claim()

    def _claim(self) -> None:
        self.token = f"o{secrets.token_hex(8)}"
        if not _OFD:
            return
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError:
            return  # a read-only directory: our leases expire instead of being proven dead
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock(fcntl.F_WRLCK, _offset(self.token)))
        except OSError:
            os.close(fd)
            return
        self._fd = fd

    def alive(self, token: object) -> bool:
        """Whether the owner of ``token`` may still be sending (True unless proven dead)."""
        if token == self.token:
            return True
        if self._fd is None or not isinstance(token, str) or not token.startswith("o"):
            return True  # no lock to ask, or a lease of an older version (a PID): wait for expiry
        try:
            offset = _offset(token)
            answer = fcntl.fcntl(self._fd, fcntl.F_OFD_GETLK, _flock(fcntl.F_WRLCK, offset))
        except (OSError, ValueError):
            return True
        return bool(struct.unpack("hhqqi4x", answer)[0] != fcntl.F_UNLCK)

    def after_fork(self) -> None:
        """A forked child is another owner: the parent's lock and token stay the parent's."""
        if self._fd is not None:
            os.close(self._fd)  # the parent's description keeps its lock
            self._fd = None
        self._claim()

    def close(self) -> None:
        """Give up the lock: leases still held are free for others at once."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _offset(token: str) -> int:
    return int(token[1:], 16) % _OFFSETS
