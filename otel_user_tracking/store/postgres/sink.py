"""PostgreSQLSink: the shared store of a fleet, written by every app process with ``COPY``.

Each batch is one transaction: its rows are copied into ``events`` (routed to their day's
partition, created first when missing); a batch meeting rows already stored (a retry after
a commit whose answer was lost) is copied into a temporary table instead and inserted with
``ON CONFLICT DO NOTHING``, so every event is stored once. Connection and statement
timeouts are bounded; a failure drops the connection, and the pipeline retries the batch
(or the outbox keeps it, when enabled). Retention drops whole day partitions.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Optional, TypeVar

from ..._throttle import ThrottledLog
from ...analytics.events import FIELDS, AnalyticsEvent
from ...analytics.sink import (
    PermanentSinkError,
    RetryableSinkError,
    SendResult,
    SinkError,
    configuration_identity,
)
from ...sink_urls import SinkURL, mask_url, sink_name
from ..errors import StoreUnavailable
from ..sqlite.schema import COLUMNS, TABLE
from .connection import CONNECT_TIMEOUT, connect, explain, migrate
from .partitions import Partitions
from .schema import SchemaError

if TYPE_CHECKING:
    from .salts import PostgresDaySalts

_logger = logging.getLogger(__name__)
SinkErrorT = TypeVar("SinkErrorT", bound=SinkError)

MAINTENANCE_INTERVAL = 60.0
STATEMENT_TIMEOUT_MS = 30_000
_COPY = f"COPY {TABLE} ({', '.join(COLUMNS)}) FROM STDIN"
_STAGING = "otel_staging"
_STAGE = f"COPY {_STAGING} ({', '.join(COLUMNS)}) FROM STDIN"
_MERGE = (
    f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS)} FROM {_STAGING} "
    "ON CONFLICT (ts_us, event_id) DO NOTHING"
)
# SQLSTATE classes worth a retry: connection, resources (disk full, too many connections),
# operator intervention (shutdown, cancel), transaction rollback (deadlock, serialization),
# lock not available, system errors.
_TS = itemgetter(FIELDS.index("ts_us"))
_RETRYABLE_CLASSES = ("08", "53", "57", "40", "55", "58", "XX")
_UNIQUE_VIOLATION = "23505"
_NO_PARTITION = "23514"


class PostgreSQLSink:
    """Store events in a PostgreSQL database shared by every process of every machine.

    Usage: ``AnalyticsSpanProcessor(sinks=[PostgreSQLSink("postgresql://app@db/analytics")])``,
    or ``OTEL_PYTHON_USER_TRACKING_SINKS=postgresql://user:password@host:5432/db``; read it
    with ``otel-user-tracking report postgresql://...``. Needs the ``postgres`` extra.

    Args:
        url: A libpq URL (``postgresql://user:password@host:port/database?sslmode=...``).
        retention_days: Day partitions wholly older than this are dropped; 0 keeps everything.
        max_store_mb: Past this size the oldest day partitions are dropped (never today's); 0: no cap.
        connect_timeout: Seconds a connection attempt may take.
        statement_timeout: Seconds a batch's statements may take before the server cancels them.
        maintenance_interval: Seconds between two retention passes (each after a batch).
        days_ahead: Partitions kept created ahead of today.
    """

    max_batch_size = 5000
    takes_rows = True
    takes_filtered = True  # the store counts bots' requests as the SQLite store does
    preferred_batch_size = 2000
    remote = True  # over the network: durable delivery goes through the outbox

    def __init__(
        self,
        url: str,
        *,
        retention_days: float = 90,
        max_store_mb: float = 0,
        connect_timeout: float = CONNECT_TIMEOUT,
        statement_timeout: float = STATEMENT_TIMEOUT_MS / 1000,
        maintenance_interval: float = MAINTENANCE_INTERVAL,
        days_ahead: int = 2,
    ) -> None:
        if retention_days < 0 or max_store_mb < 0:
            raise ValueError("PostgreSQLSink: retention_days and max_store_mb must be 0 (off) or more")
        if not url.strip().lower().startswith(("postgresql://", "postgres://")):
            raise ValueError(f"PostgreSQLSink: {mask_url(url)!r} is not a postgresql://user@host/db URL")
        self._url = url.strip()
        self.retention_days = retention_days
        self.max_store_mb = max_store_mb
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self.maintenance_interval = maintenance_interval
        self.name = sink_name("postgresql", self._url)
        self.identity = configuration_identity("postgresql", self._url)
        self.dropped_partitions = 0
        self.merged_batches = 0  # batches that met rows already stored (retries), merged
        self.failures = 0  # batches that failed (each logged once per kind and period)
        self.cleaned_batches = 0  # batches stored with text PostgreSQL cannot hold replaced
        self._partitions = Partitions(days_ahead)
        self._log = ThrottledLog(_logger)
        self._reset()
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _reset_in_child(ref()))

    def _reset(self) -> None:
        """No connection, a fresh lock (at start, and in a forked child: the parent's are not ours)."""
        self._connection: Optional[Any] = None
        self._lock = threading.Lock()
        self._next_maintenance = 0.0
        self._partitions.forget()

    def check(self) -> None:
        """Connect and migrate now; a newer schema, or a missing driver, stops the start.

        An unreachable database does not: the app starts, and the pipeline retries (or the
        outbox keeps the events) until it is back.
        """
        with self._lock:
            try:
                self._connect()
            except SchemaError as exc:
                raise ValueError(f"analytics store {self.name}: {exc}") from None
            except StoreUnavailable as exc:
                if "psycopg" in str(exc) and "pip install" in str(exc):
                    raise ValueError(str(exc)) from None
                self._log.warning("connect", "analytics store %s is unreachable for now: %s", self.name, exc)

    def send(self, batch: Sequence[AnalyticsEvent]) -> Optional[SendResult]:
        import psycopg

        with self._lock:
            try:
                connection = self._connect()
                self._store(connection, batch)
                self._maintain(connection)
            except SchemaError as exc:
                raise PermanentSinkError(f"{self.name}: {exc}") from None
            except StoreUnavailable as exc:
                self._drop_connection()
                raise self._failed(RetryableSinkError(str(exc), kind="unreachable")) from None
            except UnicodeEncodeError:
                raise self._failed(PermanentSinkError(f"{self.name}: text that is not UTF-8")) from None
            except psycopg.Error as exc:
                self._drop_connection()
                state = exc.sqlstate or ""
                message = f"{self.name}: {explain(exc)}"
                if not isinstance(exc, psycopg.DataError) and (not state or state[:2] in _RETRYABLE_CLASSES):
                    raise self._failed(RetryableSinkError(message, kind=_kind(exc))) from None
                raise self._failed(PermanentSinkError(message, kind=_kind(exc))) from None
        return None

    def _failed(self, error: SinkErrorT) -> SinkErrorT:
        """Count the failure, and log it once per kind and period (the pipeline retries it)."""
        self.failures += 1
        self._log.warning(
            f"send:{error.kind}",
            "analytics store %s: a batch failed (%s); %s",
            self.name,
            error,
            "it is retried" if isinstance(error, RetryableSinkError) else "it is not retried",
        )
        return error

    def _store(self, connection: Any, batch: Sequence[AnalyticsEvent]) -> None:
        import psycopg

        self._partitions.ensure(connection, map(_TS, batch))
        try:
            with connection.transaction(), connection.cursor().copy(_COPY) as copy:
                for row in batch:
                    copy.write_row(row)
        except psycopg.errors.UniqueViolation:
            self._merge(connection, batch)
        except psycopg.errors.CheckViolation:  # a partition dropped (retention) meanwhile
            self._partitions.forget()
            self._partitions.ensure(connection, map(_TS, batch))
            self._merge(connection, batch)
        except (psycopg.DataError, UnicodeEncodeError):
            # Text PostgreSQL cannot hold (NUL, lone surrogates: only a hostile request sends
            # them) would fail the whole batch for ever: stored with replacement characters.
            self._merge(connection, [tuple(map(_storable, row)) for row in batch])  # type: ignore[misc]
            self.cleaned_batches += 1

    def _merge(self, connection: Any, batch: Sequence[AnalyticsEvent]) -> None:
        """Copy into a temporary table, then insert what is not stored yet."""
        with connection.transaction():
            connection.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGING} "
                f"(LIKE {TABLE} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            with connection.cursor().copy(_STAGE) as copy:
                for row in batch:
                    copy.write_row(row)
            connection.execute(_MERGE)
        self.merged_batches += 1

    def day_salts(self) -> PostgresDaySalts:
        """The store's visitor-id day salts (``salts.SaltKeeper``): every process of the fleet shares them."""
        from .salts import PostgresDaySalts

        return PostgresDaySalts(self._url, timeout=self.connect_timeout)

    def _connect(self) -> Any:
        if self._connection is not None and not self._connection.closed:
            return self._connection
        connection = connect(self._url, application_name="otel-user-tracking", timeout=self.connect_timeout)
        try:
            connection.execute(f"SET statement_timeout = {int(self.statement_timeout * 1000)}")
            connection.execute("SET lock_timeout = 5000")
            migrate(connection)
            self._partitions.load(connection)
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return connection

    def _maintain(self, connection: Any) -> None:
        """Partitions ahead, retention and the size cap, at most once per ``maintenance_interval``.

        A failure (a reader holding the table past the lock timeout) never fails the batch
        just stored: it is logged once per period and tried at the next pass.
        """
        import psycopg

        now = time.monotonic()
        if now < self._next_maintenance:
            return
        self._next_maintenance = now + self.maintenance_interval
        try:
            self._maintain_now(connection)
        except psycopg.Error as exc:
            self._log.warning(
                "maintenance", "analytics store %s: retention is late (%s)", self.name, explain(exc)
            )
            if connection.closed or connection.broken:
                self._drop_connection()

    def _maintain_now(self, connection: Any) -> None:
        self._partitions.ensure_ahead(connection)
        if self.retention_days:
            cutoff_us = int((time.time() - self.retention_days * 86_400) * 1_000_000)
            self.dropped_partitions += self._partitions.drop_before(connection, cutoff_us)
        if self.max_store_mb:
            self.dropped_partitions += self._partitions.drop_oldest_over(
                connection, int(self.max_store_mb * 1024 * 1024)
            )

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()
        self._partitions.forget()

    def close(self) -> None:
        with self._lock:
            self._drop_connection()

    def __repr__(self) -> str:
        return f"PostgreSQLSink({mask_url(self._url)!r})"


def _reset_in_child(sink: Optional[PostgreSQLSink]) -> None:
    if sink is not None:
        sink._reset()


def _storable(value: object) -> object:
    """``value`` as PostgreSQL text can hold it: NUL and lone surrogates replaced."""
    if not isinstance(value, str):
        return value
    return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _kind(exc: Any) -> str:
    """A bounded name for the failure: the SQLSTATE's condition, or the exception's class."""
    state = getattr(exc, "sqlstate", None)
    return f"SQLSTATE {state}" if state else type(exc).__name__


def from_url(parsed: SinkURL) -> PostgreSQLSink:
    """``postgresql://user:password@host:port/database``: retention from
    ``OTEL_PYTHON_USER_TRACKING_RETENTION`` and ``..._MAX_STORE_MB``, as the SQLite store's."""
    from ...env import store_settings

    if not parsed.host:
        raise parsed.error("no host")
    if not parsed.path.strip("/"):
        raise parsed.error("no database name")
    retention_days, max_store_mb = store_settings()
    sink = PostgreSQLSink(parsed.raw, retention_days=retention_days, max_store_mb=max_store_mb)
    sink.check()
    return sink
