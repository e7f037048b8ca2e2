"""SQLiteSink: the embedded store (``store/sqlite/schema.py``) as a sink, the zero-setup default.

Read it with ``otel-user-tracking report``. Besides writing, the sink keeps the store in
shape from its own thread: events older than ``retention`` and, past ``max_store_mb``, the
oldest ones are deleted in small chunks, so the file stops growing (SQLite reuses the freed
pages) and no writer or reader waits long for the lock.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

from ..._throttle import ThrottledLog
from ..._workers import TimeSlicer
from ...analytics.events import AnalyticsEvent
from ...analytics.sink import PermanentSinkError, RetryableSinkError, SendResult
from .file import StoreFile
from .inflight import Ledger, dead_writers, ledger_directory
from .salts import SQLiteDaySalts
from .schema import TABLE, WRITERS, SchemaError, connect, insert_events

if TYPE_CHECKING:  # the URL table builds this sink: a type-only import, no loop
    from ...sink_urls import SinkURL

_logger = logging.getLogger(__name__)

DELETE_CHUNK = 2000  # rows per deleting transaction: a few milliseconds of write lock
MAINTENANCE_INTERVAL = 60.0  # seconds between two retention passes
DURABLE_WAIT = 0.2  # seconds, with durable=True: as long as events wait for the outbox
_MAX_CHUNKS_PER_PASS = 50


class SQLiteSink:
    """Store events in a local SQLite file (created on first use).

    Usage: ``AnalyticsSpanProcessor(sinks=[SQLiteSink("analytics.db", retention_days=30)])``;
    read it with ``otel-user-tracking report analytics.db``.

    Args:
        path: The store's file; its directory is created if missing.
        busy_timeout: Seconds a write waits for another writer (another app process on the
            same file) before the batch goes back to the pipeline to be retried.
        retention_days: Events older than this are deleted; 0 keeps everything.
        max_store_mb: When the events take more than this, the oldest are deleted; 0: no cap.
        maintenance_interval: Seconds between two retention passes (each after a batch).
        durable: Commit what is queued at least every ``DURABLE_WAIT`` seconds (0.2), not
            every ``flush_interval``: what a ``kill -9`` can take is 0.2 s of events.
    """

    max_batch_size = 1000
    # The store inserts an event as its row: the pipeline hands the rows over as they are.
    takes_rows = True
    remote = False  # the store is durable itself: under durable delivery it commits sooner instead (max_wait)
    # Bots', monitors' and scripts' requests are stored as ``filtered`` events, to be counted.
    takes_filtered = True
    # One transaction per ~1 000 events rather than per ``flush_at`` (100): a commit rewrites
    # the last, partly filled page of the table and of each index into the WAL (39 pages for
    # 100 events, 171 for 1 000), so bigger transactions cost less CPU an event.
    # ``flush_interval`` still bounds how long an event waits for its batch.
    preferred_batch_size = 1000

    def __init__(
        self,
        path: Union[str, Path] = "otel-user-tracking.db",
        *,
        busy_timeout: float = 5.0,
        retention_days: float = 90,
        max_store_mb: float = 0,
        maintenance_interval: float = MAINTENANCE_INTERVAL,
        durable: bool = False,
    ) -> None:
        if retention_days < 0 or max_store_mb < 0:
            raise ValueError("SQLiteSink: retention_days and max_store_mb must be 0 (off) or more")
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.retention_days = retention_days
        self.max_store_mb = max_store_mb
        self.maintenance_interval = maintenance_interval
        # The longest an event waits in memory for its transaction (the pipeline reads it).
        self.max_wait: Optional[float] = DURABLE_WAIT if durable else None
        self.name = f"sqlite({self.path})"
        self.deleted = 0  # events removed by retention or the size cap
        # Events known lost: stored in a file then deleted, truncated or replaced, or accepted
        # by a writer that died before storing them (found when this sink opens the store).
        self.lost = 0
        # What this process holds in memory for the store; the pipeline counts into it.
        self.ledger = Ledger()
        self._log = ThrottledLog(_logger)
        self._recovered = False
        self._reset()
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _reset_in_child(ref()))

    def _reset(self) -> None:
        """No connection, a fresh lock (at start, and in a forked child: the parent's are not ours)."""
        self._connection: Optional[sqlite3.Connection] = None
        self._file = StoreFile(self.path)
        self._stored_in_file = 0  # by this process, in the file open now
        self._lock = threading.Lock()
        self._next_maintenance = 0.0
        self._slicer = TimeSlicer()  # used by the pipeline's sender thread only

    def check(self) -> None:
        """Open (creating or migrating) the store now: a problem stops the start, with its fix.

        Raises ``ValueError`` for a path whose parent is a file, a read-only location, a
        file that is not a database, or a store written by a newer version.
        """
        problem = self._open_problem()
        if problem is not None:
            raise ValueError(f"analytics store {self.path}: {_explain(problem)}")

    def day_salts(self) -> SQLiteDaySalts:
        """The store's visitor-id day salts (``salts.SaltKeeper``): every writer shares them."""
        return SQLiteDaySalts(self.path, timeout=self.busy_timeout)

    def _open_problem(self) -> Optional[BaseException]:
        """Open the store now; what went wrong, or None."""
        with self._lock:
            try:
                self._connect()
            except (OSError, sqlite3.Error, SchemaError) as exc:
                self._connection = None
                return exc
        return None

    def send(self, batch: Sequence[AnalyticsEvent]) -> Optional[SendResult]:
        with self._lock:
            try:
                connection = self._connect()
                self._slicer.restart()
                unstored = self._store(connection, batch)
                self._maintain(connection)
            except SchemaError as exc:
                raise PermanentSinkError(f"{self.name}: {exc}") from None
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    raise RetryableSinkError(f"{self.name}: database is locked", kind="locked") from None
                raise RetryableSinkError(f"{self.name}: {_explain(exc)}", kind=_kind(exc)) from None
            except (sqlite3.Error, OSError) as exc:
                raise PermanentSinkError(f"{self.name}: {_explain(exc)}") from None
        if unstored is None:
            return None
        left, error = unstored
        return SendResult(retry=left, reason=f"{self.name}: {_explain(error)}", kind=_kind(error))

    def _store(
        self, connection: sqlite3.Connection, batch: Sequence[AnalyticsEvent]
    ) -> Optional[tuple[Sequence[AnalyticsEvent], sqlite3.Error]]:
        """Store the batch, in halves, quarters... while the disk cannot take it whole.

        Returns None when all of it is stored, else what did not fit (the pipeline retries
        it after a backoff, then counts it as failed) and why; raises when nothing fitted.
        """
        pending, size = batch, len(batch)
        while pending:
            piece = pending[:size]
            try:
                _in_transaction(connection, functools.partial(self._insert, connection, piece))
            except sqlite3.OperationalError as exc:
                if "full" not in str(exc).lower():
                    raise
                if size > 1:
                    size = (size + 1) // 2
                    continue
                if len(pending) == len(batch):
                    raise
                return pending, exc
            self._stored_in_file += len(piece)
            pending = pending[size:]
        return None

    def _insert(self, connection: sqlite3.Connection, events: Sequence[AnalyticsEvent]) -> None:
        """The events, and this writer's count of what it stored, in the caller's transaction."""
        insert_events(connection, events, self._slicer.tick)
        token = self.ledger.token
        counted = connection.execute(
            f"UPDATE {WRITERS} SET stored = stored + ? WHERE token = ?", (len(events), token)
        )
        if not counted.rowcount:
            connection.execute(f"INSERT INTO {WRITERS} (token, stored) VALUES (?, ?)", (token, len(events)))

    def _connect(self) -> sqlite3.Connection:
        if self._connection is not None:
            change = self._file.change()
            if change is None:
                return self._connection
            self._start_over(change)
        if self.path.parent != Path(""):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = self._connection = connect(self.path, timeout=self.busy_timeout)
        self._file.opened()
        self._stored_in_file = 0
        self.ledger.open(ledger_directory(self.path))
        if not self._recovered:
            self._recovered = True
            self._count_dead_writers(connection)
        return connection

    def _start_over(self, change: str) -> None:
        """The file is gone, truncated or replaced: report it once, and open it afresh.

        What this process stored in the old file is counted as lost (its ledger settles it,
        so a later crash does not count it again). Leftover WAL and shared-memory files of
        a deleted or truncated store belong to content that is gone; they go too, so the
        new file does not replay them.
        """
        lost, self._stored_in_file = self._stored_in_file, 0
        self._close_connection()
        if change != "replaced":
            self._file.remove()
        self.lost += lost
        self.ledger.settle(lost)
        self._log.warning(
            f"file:{change}",
            "analytics store %s was %s while the app ran: writing to a new file; %d events this "
            "process had stored there are gone (sink.lost)",
            self.path,
            "replaced by another file" if change == "replaced" else change,
            lost,
        )

    def _count_dead_writers(self, connection: sqlite3.Connection) -> None:
        """Count and report, once, the events of writers that died before storing them."""
        with dead_writers(ledger_directory(self.path), self.ledger.token) as writers:
            for writer in writers:
                row = connection.execute(
                    f"SELECT stored FROM {WRITERS} WHERE token = ?", (writer.token,)
                ).fetchone()
                lost = writer.accepted - writer.settled - (int(row[0]) if row else 0)
                connection.execute(f"DELETE FROM {WRITERS} WHERE token = ?", (writer.token,))
                if lost <= 0:
                    continue
                self.lost += lost
                _logger.warning(
                    "analytics store %s: %d events were lost: process %d ended without shutting "
                    "down (kill -9, out of memory, power loss) while they waited in memory for "
                    "the store's next transaction (see flush_interval and durable delivery in the docs)",
                    self.path,
                    lost,
                    writer.pid,
                )

    def _maintain(self, connection: sqlite3.Connection) -> None:
        """Retention and the size cap, at most once a minute, a few small transactions at a time."""
        now = time.monotonic()
        if now < self._next_maintenance or not (self.retention_days or self.max_store_mb):
            return
        self._next_maintenance = now + self.maintenance_interval
        slicer = self._slicer
        if self.retention_days:
            cutoff = int((time.time() - self.retention_days * 86_400) * 1_000_000)
            for _ in range(_MAX_CHUNKS_PER_PASS):
                if not self._delete_chunk(connection, "ts_us < ?", (cutoff,)):
                    break
                slicer.tick()
        if self.max_store_mb:
            for _ in range(_MAX_CHUNKS_PER_PASS):
                if _used_bytes(connection) <= self.max_store_mb * 1024 * 1024:
                    break
                if not self._delete_chunk(connection, "1", ()):
                    break
                slicer.tick()

    def _delete_chunk(self, connection: sqlite3.Connection, where: str, params: tuple[object, ...]) -> int:
        """Delete the oldest ``DELETE_CHUNK`` events matching ``where`` (by the time index)."""
        statement = (
            f"DELETE FROM {TABLE} WHERE id IN (SELECT id FROM {TABLE} INDEXED BY {TABLE}_ts_event "
            f"WHERE {where} ORDER BY ts_us LIMIT {DELETE_CHUNK})"
        )
        deleted = _in_transaction(connection, lambda: connection.execute(statement, params).rowcount)
        self.deleted += deleted
        return deleted

    def _close_connection(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(sqlite3.Error):
                self._connection.close()
            self._connection = None

    def close(self) -> None:
        """Close the file; a clean end, so this process's ledger and writer row go."""
        with self._lock:
            connection = self._connection
            if connection is not None:
                token = self.ledger.token
                with contextlib.suppress(sqlite3.Error):
                    statement = f"DELETE FROM {WRITERS} WHERE token = ?"
                    _in_transaction(connection, lambda: connection.execute(statement, (token,)).rowcount)
            self.ledger.close()
            self._close_connection()

    def __repr__(self) -> str:
        return f"SQLiteSink({str(self.path)!r})"


def _reset_in_child(sink: Optional[SQLiteSink]) -> None:
    if sink is not None:
        sink._reset()


def _in_transaction(connection: sqlite3.Connection, work: object) -> int:
    """Run ``work()`` in one write transaction; on failure roll back and raise the original error.

    A failed ROLLBACK (SQLite may already have rolled back, e.g. after SQLITE_FULL) must not
    replace the error that says what happened.
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        result = work()  # type: ignore[operator]
        connection.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
        raise
    return int(result or 0)


def _used_bytes(connection: sqlite3.Connection) -> int:
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    free = connection.execute("PRAGMA freelist_count").fetchone()[0]
    size = connection.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)


def _kind(exc: BaseException) -> str:
    text = str(exc).lower()
    for marker in ("full", "readonly", "read-only", "disk i/o", "unable to open"):
        if marker in text:
            return marker
    return type(exc).__name__


def _explain(exc: BaseException) -> str:
    """What went wrong with the store, in words that point at the fix."""
    text = str(exc)
    lowered = text.lower()
    if isinstance(exc, SchemaError):
        return text
    if "full" in lowered:
        return (
            f"the disk is full ({text}); free space or cap the store (OTEL_PYTHON_USER_TRACKING_MAX_STORE_MB)"
        )
    if "readonly" in lowered or "read-only" in lowered:
        return f"the store is read-only ({text}); set OTEL_PYTHON_USER_TRACKING_SINKS to a writable path"
    if "not a database" in lowered or "malformed" in lowered:
        return f"the file is not an otel-user-tracking store ({text}); move it away or use another path"
    if isinstance(exc, (FileExistsError, NotADirectoryError)) or "not a directory" in lowered:
        return f"a part of the path is a file, not a directory ({text})"
    if isinstance(exc, PermissionError) or "unable to open" in lowered:
        return (
            f"the store cannot be opened or created ({text}); check the directory exists and is "
            "writable, or set OTEL_PYTHON_USER_TRACKING_SINKS to a writable path"
        )
    return f"{type(exc).__name__}: {text}"


def from_url(parsed: SinkURL) -> SQLiteSink:
    """``sqlite:///relative.db`` (relative to the working directory) or ``sqlite:////abs.db``.

    Retention and the size cap come from ``OTEL_PYTHON_USER_TRACKING_RETENTION`` and
    ``OTEL_PYTHON_USER_TRACKING_MAX_STORE_MB``, ``durable`` from ``OTEL_PYTHON_USER_TRACKING_OUTBOX``
    (on when set); the store is opened at once, so a problem with it stops the start instead of
    surfacing at the first write.
    """
    from ...env import store_settings

    if parsed.host:
        raise parsed.error(f"unexpected host {parsed.host!r}")
    path = parsed.path[1:] if parsed.path.startswith("/") else parsed.path
    if not path:
        raise parsed.error("no file path")
    retention_days, max_store_mb = store_settings()
    sink = SQLiteSink(
        os.path.expanduser(path),
        retention_days=retention_days,
        max_store_mb=max_store_mb,
        durable=durable_from_env(),
    )
    sink.check()
    return sink


def durable_from_env() -> bool:
    """Durable delivery was asked for (``OTEL_PYTHON_USER_TRACKING_OUTBOX``): the store commits sooner."""
    from ...env import outbox_settings

    return outbox_settings()[0] is not None
