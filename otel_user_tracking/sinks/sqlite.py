"""SQLiteSink: the embedded store (``analytics/store.py``) as a sink, the zero-setup default.

Read it with ``otel-user-tracking report``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from typing import Optional, Union

from .._cooperate import TimeSlicer
from ..analytics.events import AnalyticsEvent
from ..analytics.store import CHUNK, INSERT, INSERT_CHUNK, SchemaError, connect
from ._base import PermanentSinkError, RetryableSinkError
from ._url import SinkURL


class SQLiteSink:
    """Store events in a local SQLite file (created on first use).

    ``busy_timeout`` is how long a write waits for another writer (a second app process on
    the same file) before the batch is retried by the pipeline.

    Usage: ``AnalyticsSpanProcessor(sinks=[SQLiteSink("analytics.db")])``; read it with
    ``python -m otel_user_tracking report analytics.db``.
    """

    max_batch_size = 1000

    def __init__(
        self, path: Union[str, Path] = "otel-user-tracking.db", *, busy_timeout: float = 5.0
    ) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.name = f"sqlite({self.path})"
        self._connection: Optional[sqlite3.Connection] = None
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            if self.path.parent != Path(""):
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = connect(self.path, timeout=self.busy_timeout)
        return self._connection

    def send(self, batch: Sequence[AnalyticsEvent]) -> None:
        with self._lock:
            try:
                connection = self._connect()
                connection.execute("BEGIN IMMEDIATE")
                try:
                    _insert(connection, batch)
                    connection.execute("COMMIT")
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
            except SchemaError as exc:
                raise PermanentSinkError(f"{self.name}: {exc}") from None
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    raise RetryableSinkError(f"{self.name}: database is locked") from None
                raise PermanentSinkError(f"{self.name}: {exc}") from None
            except sqlite3.Error as exc:
                raise PermanentSinkError(f"{self.name}: {type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def __repr__(self) -> str:
        return f"SQLiteSink({str(self.path)!r})"


def _insert(connection: sqlite3.Connection, batch: Sequence[AnalyticsEvent]) -> None:
    """Insert in chunks of ``CHUNK`` rows, one multi-row statement each, stepping aside between.

    An event is its row (the store's columns are the event's fields in order), so rows are
    bound as they are; a multi-row statement saves a step per row, and the pauses keep the
    event loop from waiting out a GIL switch interval behind a long insert.
    """
    slicer = TimeSlicer()
    for start in range(0, len(batch), CHUNK):
        rows = batch[start : start + CHUNK]
        if len(rows) == CHUNK:
            connection.execute(INSERT_CHUNK, tuple(chain.from_iterable(rows)))
        else:
            connection.executemany(INSERT, rows)
        slicer.tick()


def from_url(parsed: SinkURL) -> SQLiteSink:
    """``sqlite:///relative.db`` (relative to the working directory) or ``sqlite:////abs.db``."""
    if parsed.host:
        raise parsed.error(f"unexpected host {parsed.host!r}")
    path = parsed.path[1:] if parsed.path.startswith("/") else parsed.path
    if not path:
        raise parsed.error("no file path")
    return SQLiteSink(os.path.expanduser(path))
