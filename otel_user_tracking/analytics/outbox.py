"""The outbox: events for remote sinks, kept in a local SQLite file until the backend took them.

With durable delivery on, an event counts as accepted once it is in the outbox (one
transaction per batch), not while it sits in memory: a crash, a ``kill -9`` or a backend
outage longer than any in-memory queue loses nothing that was accepted. Each remote sink's
sender leases its own rows, sends them, and deletes them when the backend acknowledged
them (or refused them for good). Delivery is at least once, with the same ``event_id``s,
which PostHog (``uuid``) and Segment (``messageId``) de-duplicate.

Rows are keyed by the sink's identity (a digest of its whole configuration, credential
included), never by its name: two sinks named alike (two webhooks on one host) or one sink
reconfigured with another key never share rows. Leases let several processes (``uvicorn
--workers N``, containers sharing a volume) share one outbox without sending a row twice
while its lease holds; the owner of a lease is a random token (``owners.py``), and a lease
of an owner that has died is taken over at once, any other after ``LEASE_SECONDS``.
Delivered rows are erased, not only unlinked: ``secure_delete`` zeroes their bytes in the
file and the write-ahead log is checkpointed and truncated after each removal.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Optional, Union

from .events import AnalyticsEvent, EventRow
from .owners import Owner

LEASE_SECONDS = 60.0
CHECKPOINT_BUSY_MS = 100  # a reader of another process may delay the WAL's truncation this long
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS outbox ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, sink TEXT NOT NULL, event TEXT NOT NULL,"
    " lease_until REAL NOT NULL DEFAULT 0, owner TEXT NOT NULL DEFAULT '')",
    "CREATE INDEX IF NOT EXISTS outbox_sink_id ON outbox (sink, id)",
    "CREATE INDEX IF NOT EXISTS outbox_sink_lease ON outbox (sink, lease_until)",
    "CREATE TABLE IF NOT EXISTS outbox_sinks (sink TEXT PRIMARY KEY, name TEXT NOT NULL) WITHOUT ROWID",
)


class Outbox:
    """One outbox file, shared by the remote sinks of a process (and by other processes).

    Every method takes the sink's key (``sink_identity``); errors of the file (``database is
    locked``, ``database or disk is full``) are raised as ``sqlite3.Error`` for the caller to
    count and retry.

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
        self._owner = Owner(self.path)

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
            connection.execute("PRAGMA secure_delete=ON")
            for statement in _SCHEMA:
                connection.execute(statement)
        except BaseException:  # not a database, locked, read-only: the caller reports it
            connection.close()
            raise
        return connection

    def after_fork(self) -> None:
        """A forked child gets its own connection, lock and owner token (the parent's are not its to use)."""
        self._lock = threading.Lock()
        self._connection = self._open()
        self._owner.after_fork()

    def put(self, sink: str, events: Sequence[EventRow], name: str = "") -> int:
        """Store events for ``sink`` (``name``: how people know it) in one transaction; returns
        how many old ones were dropped to stay within ``max_events``."""
        rows = [(sink, json.dumps(list(event), separators=(",", ":"))) for event in events]
        with self._lock, _transaction(self._live()) as db:
            if name:
                db.execute("INSERT OR IGNORE INTO outbox_sinks (sink, name) VALUES (?, ?)", (sink, name))
            db.executemany("INSERT INTO outbox (sink, event) VALUES (?, ?)", rows)
            (count,) = db.execute("SELECT COUNT(*) FROM outbox WHERE sink = ?", (sink,)).fetchone()
            excess = int(count) - self.max_events
            if excess > 0:
                oldest = "SELECT id FROM outbox WHERE sink = ? ORDER BY id LIMIT ?"
                db.execute(f"DELETE FROM outbox WHERE id IN ({oldest})", (sink, excess))
            return max(excess, 0)

    def lease(self, sink: str, limit: int) -> list[tuple[int, AnalyticsEvent]]:
        """Up to ``limit`` of ``sink``'s oldest events that no live owner holds, now held by us."""
        now = time.time()
        me = self._owner.token
        with self._lock, _transaction(self._live()) as db:
            holders = db.execute(
                "SELECT DISTINCT owner FROM outbox WHERE sink = ? AND lease_until > ? AND owner != ?",
                (sink, now, me),
            ).fetchall()
            free = [me, *(owner for (owner,) in holders if not self._owner.alive(owner))]
            marks = ",".join("?" * len(free))
            taken = db.execute(
                f"SELECT id, event FROM outbox WHERE sink = ? AND (lease_until <= ? OR owner IN ({marks}))"
                " ORDER BY id LIMIT ?",
                (sink, now, *free, limit),
            ).fetchall()
            db.executemany(
                "UPDATE outbox SET lease_until = ?, owner = ? WHERE id = ?",
                [(now + LEASE_SECONDS, me, row_id) for row_id, _ in taken],
            )
        return [(row_id, AnalyticsEvent._make(json.loads(event))) for row_id, event in taken]

    def next_expiry(self, sink: str) -> Optional[float]:
        """When (``time.time()``) the first lease others hold on ``sink``'s rows runs out, if any."""
        query = "SELECT MIN(lease_until) FROM outbox WHERE sink = ? AND lease_until > ?"
        with self._lock:
            (until,) = self._live().execute(query, (sink, time.time())).fetchone()
        return None if until is None else float(until)

    def release(self, ids: Sequence[int]) -> None:
        """Give back leased rows (to be sent again later) without deleting them."""
        with self._lock, _transaction(self._live()) as db:
            db.executemany("UPDATE outbox SET lease_until = 0 WHERE id = ?", [(row_id,) for row_id in ids])

    def remove(self, ids: Sequence[int]) -> None:
        """Delete rows the backend acknowledged or refused for good, and erase them from the WAL."""
        with self._lock:
            with _transaction(self._live()) as db:
                db.executemany("DELETE FROM outbox WHERE id = ?", [(row_id,) for row_id in ids])
            self._truncate_wal()

    def _truncate_wal(self) -> None:
        """Copy the WAL into the file and empty it (lock held): the deleted rows' old pages go
        with it. Best effort: a reader or writer of another process may keep it for later."""
        db = self._live()
        with contextlib.suppress(sqlite3.Error):
            db.execute(f"PRAGMA busy_timeout={CHECKPOINT_BUSY_MS}")
            try:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            finally:
                db.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")

    def backlog(self, sink: str) -> int:
        """Undelivered events of ``sink``, whoever holds them."""
        with self._lock:
            (count,) = self._live().execute("SELECT COUNT(*) FROM outbox WHERE sink = ?", (sink,)).fetchone()
        return int(count)

    def strays(self, names: Collection[str], keys: Collection[str]) -> dict[str, int]:
        """Events waiting under one of ``names`` for a sink key not in ``keys``: left by another
        configuration of a sink so named (another credential or path, or an older version, which
        keyed rows by name). They are never sent with this configuration."""
        found: dict[str, int] = {}
        with self._lock:
            db = self._live()
            named = db.execute("SELECT sink, name FROM outbox_sinks").fetchall()
            candidates = [(sink, name) for sink, name in named if name in names and sink not in keys]
            candidates += [(name, name) for name in names if name not in keys]  # rows of older versions
            for sink, name in candidates:
                (count,) = db.execute("SELECT COUNT(*) FROM outbox WHERE sink = ?", (sink,)).fetchone()
                if count:
                    found[name] = found.get(name, 0) + int(count)
        return found

    def close(self) -> None:
        """Close the file; later calls raise ``OutboxClosed`` (a sender still retrying past
        shutdown's deadline stops on it, leaving its events in the file)."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
                self._owner.close()

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
            try:
                self._connection.execute("COMMIT")
            except sqlite3.Error:  # a full disk fails the commit: end the transaction all the same
                with contextlib.suppress(sqlite3.Error):
                    self._connection.execute("ROLLBACK")
                raise
            return
        with contextlib.suppress(sqlite3.Error):
            self._connection.execute("ROLLBACK")
