"""What a store's writer holds in memory, kept where a ``kill -9`` cannot take it along.

Events wait in memory for the store's next transaction (a batch, or ``flush_interval``). A
process killed then (``kill -9``, the OOM killer) loses them, and its counters with them. So
each writing process keeps two counters in a small file beside the store, mapped into its
memory: events accepted into its queue, and events settled otherwise (given up and counted
by the pipeline, or gone with a truncated file and reported). Updating them is a store into
shared memory, no system call; the kernel keeps the page when the process dies. The store's
``writers`` row of the process counts what its transactions stored, in those transactions.

A process holds an exclusive ``flock`` on its file while it lives; the kernel releases it
when the process dies, however it dies. A later start that can take the lock of another's
file knows that writer is gone: ``accepted - settled - stored`` of its events were lost.
Without ``fcntl`` (Windows) there is no ledger and such losses stay unknown.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import secrets
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_logger = logging.getLogger(__name__)

_SLOTS = 3  # accepted, settled, pid
_SIZE = 8 * _SLOTS  # native unsigned 64-bit integers ("Q")


def ledger_directory(store: Path) -> Path:
    """Where the ledgers of a store's writers live: ``<store>-inflight/`` beside it."""
    return Path(f"{store}-inflight")


class Ledger:
    """This process's counters of events it holds for one store (one per ``SQLiteSink``).

    ``accept`` and ``settle`` are called by the sink's pipeline (under its lock); until
    ``open`` they count in memory only.
    """

    def __init__(self) -> None:
        self.token = secrets.token_hex(8)
        # accepted, settled, pid: in memory until ``open``, then in the mapped file.
        self._view = _counters()
        self._mapped: Optional[memoryview] = None
        self._fd: Optional[int] = None
        self._path: Optional[Path] = None
        self._map: Optional[mmap.mmap] = None
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _forget_in_child(ref()))

    def open(self, directory: Path) -> None:
        """Create and lock this process's file in ``directory``; a failure leaves no ledger."""
        if fcntl is None or self._fd is not None:
            return
        fd = -1
        try:
            directory.mkdir(exist_ok=True)
            fd = os.open(directory / self.token, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.ftruncate(fd, _SIZE)
            self._map = mmap.mmap(fd, _SIZE)
        except OSError as exc:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.unlink(directory / self.token)
                os.close(fd)
            _logger.debug("no in-flight ledger for %s: %s", directory, exc)
            return
        self._fd, self._path = fd, directory / self.token
        mapped = self._mapped = memoryview(self._map).cast("Q")
        mapped[:] = self._view
        mapped[2] = os.getpid()
        self._view = mapped

    @property
    def accepted(self) -> int:
        return int(self._view[0])

    @property
    def settled(self) -> int:
        return int(self._view[1])

    def accept(self, count: int) -> None:
        self._view[0] += count

    def settle(self, count: int) -> None:
        self._view[1] += count

    def close(self) -> None:
        """A clean end: every event was stored or counted by the pipeline; the file goes."""
        if self._path is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self._path)
        self._forget()

    def _forget(self) -> None:
        """Drop the file without touching its lock (in a forked child: the lock is the parent's)."""
        self._view = _counters()
        if self._mapped is not None:
            self._mapped.release()
            self._mapped = None
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = self._path = None
        self.token = secrets.token_hex(8)


def _counters() -> memoryview:
    return memoryview(bytearray(_SIZE)).cast("Q")


def _forget_in_child(ledger: Optional[Ledger]) -> None:
    if ledger is not None:
        ledger._forget()


@dataclass(frozen=True)
class DeadWriter:
    """What a writer that ended without a clean close had accepted and settled."""

    token: str
    pid: int
    accepted: int
    settled: int


@contextlib.contextmanager
def _locked_if_dead(path: Path) -> Iterator[Optional[DeadWriter]]:
    """The ledger at ``path`` if its writer is gone (we hold its lock meanwhile), else None."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield None  # its writer lives
            return
        if os.fstat(fd).st_ino != _inode(path):
            yield None  # another start already took it over and removed it
            return
        data = os.pread(fd, _SIZE, 0)
        accepted, settled, pid = memoryview(data).cast("Q") if len(data) == _SIZE else (0, 0, 0)
        yield DeadWriter(path.name, int(pid), int(accepted), int(settled))
        with contextlib.suppress(OSError):
            os.unlink(path)
    finally:
        os.close(fd)


@contextlib.contextmanager
def dead_writers(directory: Path, own: str) -> Iterator[list[DeadWriter]]:
    """The ledgers of writers that are gone, each locked (and removed after the block)."""
    if fcntl is None:
        yield []
        return
    try:
        names = sorted(name for name in os.listdir(directory) if name != own)
    except OSError:
        names = []
    with contextlib.ExitStack() as stack:
        found = [stack.enter_context(_locked_if_dead(directory / name)) for name in names]
        yield [writer for writer in found if writer is not None]


def _inode(path: Path) -> Optional[int]:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None
