"""The outbox: events for remote sinks, kept in a local SQLite file until the backend took them.

With durable delivery on, an event counts as accepted once it is in the outbox (one
transaction per batch), not while it sits in memory: a crash, a ``kill -9`` or a backend
outage longer than any in-memory queue loses nothing that was accepted. Each remote sink's
sender leases its own rows, sends them, and deletes them when the backend acknowledged
them (or refused them for good). Delivery is at least once, with the same ``event_id``s,
which PostHog (``uuid``) and Segment (``messageId``) de-duplicate.

Leases let several processes (``uvicorn --workers N``) share one outbox without sending a
row twice while its lease holds; a lease held by a process that died on this machine is
taken over at once, any other after ``LEASE_SECONDS``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

from .events import AnalyticsEvent, EventRow

LEASE_SECONDS = 60.0
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS outbox ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, sink TEXT NOT NULL, event TEXT NOT NULL,"
    " lease_until REAL NOT NULL DEFAULT 0, owner INTEGER NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS outbox_sink_id ON outbox (sink, id)",
)


class Outbox:
    """One outbox file, shared by the remote sinks of a process (and by other processes).

    Args:
        path: The SQLite file (created if missing).
        max_events: Undelivered events kept per sink; past it the oldest are dropped.
        busy_timeout: Seconds a write waits for another process holding the file.
    """

    def __init__(
        self, path: Union[str, Path], *, max_events: int = 1_000_000, busy_timeout: float = 5.0
    ) -> None:
        if max_events < 1:
            raise ValueError("the outbox must hold at least 1 event per sink (max_outbox_size)")
        self.path = Path(path)
        self.max_events = max_events
        self._busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._connection: Optional[sqlite3.Connection] = self._open()

    def _live(self) -> sqlite3.Connection:
        """The connection (lock held); ``OutboxClosed`` once ``close()`` ran."""
        if self._connection is None:
            raise OutboxClosed(f"{self!r} is closed")
        return self._connection

    def _open(self) -> sqlite3.Connection:
        if self.path.parent != Path(""):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            str(self.path), timeout=self._busy_timeout, check_same_thread=False, isolation_level=None
        )
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                connection.execute(statement)
        except BaseException:  # not a database, locked, read-only: the caller reports it
            connection.close()
            raise
        return connection

    def after_fork(self) -> None:
        """A forked child gets its own connection and lock (the parent's are not its to use)."""
        self._lock = threading.Lock()
        self._connection = self._open()

    def put(self, sink: str, events: Sequence[EventRow]) -> int:
        """Store events for ``sink`` in one transaction; returns how many old ones were dropped
        to stay within ``max_events``."""
        rows = [(sink, json.dumps(list(event), separators=(",", ":"))) for event in events]
        with self._lock, _transaction(self._live()) as db:
            db.executemany("INSERT INTO outbox (sink, event) VALUES (?, ?)", rows)
            (count,) = db.execute("SELECT COUNT(*) FROM outbox WHERE sink = ?", (sink,)).fetchone()
            excess = int(count) - self.max_events
            if excess > 0:
                oldest = "SELECT id FROM outbox WHERE sink = ? ORDER BY id LIMIT ?"
                db.execute(f"DELETE FROM outbox WHERE id IN ({oldest})", (sink, excess))
            return max(excess, 0)

    def lease(self, sink: str, limit: int) -> list[tuple[int, AnalyticsEvent]]:
        """Up to ``limit`` of ``sink``'s oldest events that no live process holds, now held by us."""
        now = time.time()
        with self._lock, _transaction(self._live()) as db:
            rows = db.execute(
                "SELECT id, event, owner, lease_until FROM outbox WHERE sink = ? ORDER BY id LIMIT ?",
                (sink, limit * 4),
            ).fetchall()
            taken = [
                (row_id, event)
                for row_id, event, owner, until in rows
                if until <= now or owner == os.getpid() or not _alive(owner)
            ][:limit]
            db.executemany(
                "UPDATE outbox SET lease_until = ?, owner = ? WHERE id = ?",
                [(now + LEASE_SECONDS, os.getpid(), row_id) for row_id, _ in taken],
            )
        return [(row_id, AnalyticsEvent._make(json.loads(event))) for row_id, event in taken]

    def release(self, ids: Sequence[int]) -> None:
        """Give back leased rows (to be sent again later) without deleting them."""
        with self._lock, _transaction(self._live()) as db:
            db.executemany("UPDATE outbox SET lease_until = 0 WHERE id = ?", [(row_id,) for row_id in ids])

    def remove(self, ids: Sequence[int]) -> None:
        """Delete rows the backend acknowledged or refused for good."""
        with self._lock, _transaction(self._live()) as db:
            db.executemany("DELETE FROM outbox WHERE id = ?", [(row_id,) for row_id in ids])

    def backlog(self, sink: str) -> int:
        """Undelivered events of ``sink``, whoever holds them."""
        with self._lock:
            (count,) = self._live().execute("SELECT COUNT(*) FROM outbox WHERE sink = ?", (sink,)).fetchone()
        return int(count)

    def close(self) -> None:
        """Close the file; later calls raise ``OutboxClosed`` (a sender still retrying past
        shutdown's deadline stops on it, leaving its events in the file)."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def __repr__(self) -> str:
        return f"Outbox({str(self.path)!r})"


class OutboxClosed(RuntimeError):
    """The outbox was closed: the processor shut down, nothing more is stored or sent."""


class _transaction:
    """``with _transaction(db) as db:`` one write transaction, rolled back on error."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def __enter__(self) -> sqlite3.Connection:
        self._connection.execute("BEGIN IMMEDIATE")
        return self._connection

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        if kind is None:
            self._connection.execute("COMMIT")
            return
        with contextlib.suppress(sqlite3.Error):
            self._connection.execute("ROLLBACK")


def _alive(pid: int) -> bool:
    """Whether a process of this machine with ``pid`` runs (leases of dead ones are free)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
