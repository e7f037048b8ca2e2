"""The embedded analytics store: its schema, migrations and connections, for writers and readers.

WAL mode lets readers (the report, the dashboard) read while the app writes; each batch is
one transaction, so a crash never leaves half a batch; ``event_id`` is unique and inserts
ignore duplicates, so a batch retried after an ambiguous failure is stored once. Timestamps
are integer microseconds since the epoch (UTC): compact, and range scans on them use the
index. The schema is versioned with ``PRAGMA user_version``; a database written by a newer
version of this package is refused instead of being misread.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Union

from .events import AnalyticsEvent

SCHEMA_VERSION = 1
TABLE = "events"

_COLUMNS = (
    "event_id",
    "type",
    "ts_us",
    "trace_id",
    "span_id",
    "name",
    "method",
    "scheme",
    "host",
    "path",
    "query",
    "route",
    "page",
    "status_code",
    "duration_ms",
    "referrer",
    "locale",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "user_agent",
    "client_address",
    "user_id",
    "user_name",
    "user_email",
    "visitor_id",
    "session_id",
    "error_type",
    "error_message",
    "error_stacktrace",
    "meta",
)

# Each entry moves the schema from version N to N+1.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        f"""CREATE TABLE IF NOT EXISTS {TABLE} (
            id INTEGER PRIMARY KEY,
            event_id TEXT NOT NULL,
            type TEXT NOT NULL,
            ts_us INTEGER NOT NULL,
            trace_id TEXT NOT NULL,
            span_id TEXT NOT NULL,
            name TEXT, method TEXT, scheme TEXT, host TEXT, path TEXT, query TEXT, route TEXT,
            page TEXT, status_code INTEGER, duration_ms REAL, referrer TEXT, locale TEXT,
            utm_source TEXT, utm_medium TEXT, utm_campaign TEXT, user_agent TEXT,
            client_address TEXT, user_id TEXT, user_name TEXT, user_email TEXT, visitor_id TEXT,
            session_id TEXT, error_type TEXT, error_message TEXT, error_stacktrace TEXT,
            meta TEXT
        )""",
        # Rows append in time order to the rowid tree; event_id is unique for idempotent retries.
        f"CREATE UNIQUE INDEX IF NOT EXISTS {TABLE}_event_id ON {TABLE} (event_id)",
        # The report filters every query by (type, time window): one covering index serves all
        # the pageview sections without touching the table, the others serve errors and events.
        f"CREATE INDEX IF NOT EXISTS {TABLE}_pageviews ON {TABLE} "
        "(type, ts_us, page, visitor_id, referrer, locale, utm_source)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_type_name_ts ON {TABLE} (type, name, ts_us)",
    ),
)
INSERT = f"INSERT OR IGNORE INTO {TABLE} ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"


class SchemaError(Exception):
    """The database was written by a newer version of otel-user-tracking."""


def connect(path: Union[str, Path], *, timeout: float = 5.0) -> sqlite3.Connection:
    """Open (creating if needed) and migrate a store; WAL mode, ``busy_timeout`` set."""
    connection = sqlite3.connect(str(path), timeout=timeout, check_same_thread=False, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        # Random event ids make the unique index the hot spot; keep it in memory (32 MiB).
        connection.execute("PRAGMA cache_size=-32768")
        migrate(connection)
    except BaseException:
        connection.close()
        raise
    return connection


def connect_readonly(path: Union[str, Path]) -> sqlite3.Connection:
    """Open an existing store for reading only; raise ``FileNotFoundError`` or ``SchemaError``."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no analytics database at {path}")
    uri = f"{Path(path).resolve().as_uri()}?mode=ro"
    connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        connection.close()
        raise SchemaError(_newer(path, version))
    return connection


def migrate(connection: sqlite3.Connection) -> None:
    """Bring the schema to ``SCHEMA_VERSION`` in one transaction."""
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise SchemaError(_newer("the database", version))
    if version == SCHEMA_VERSION:
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        for statements in _MIGRATIONS[version:]:
            for statement in statements:
                connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _newer(path: object, version: int) -> str:
    return (
        f"{path} has schema version {version}, newer than this otel-user-tracking "
        f"understands ({SCHEMA_VERSION}); upgrade the package or use another file"
    )


def row(event: AnalyticsEvent) -> tuple[object, ...]:
    """The event as a row in ``_COLUMNS`` order."""
    stamp = event.timestamp
    ts_us = int(stamp.timestamp()) * 1_000_000 + stamp.microsecond
    return (
        event.event_id,
        event.type,
        ts_us,
        event.trace_id,
        event.span_id,
        event.name,
        event.method,
        event.scheme,
        event.host,
        event.path,
        event.query,
        event.route,
        event.page,
        event.status_code,
        event.duration_ms,
        event.referrer,
        event.locale,
        event.utm_source,
        event.utm_medium,
        event.utm_campaign,
        event.user_agent,
        event.client_address,
        event.user_id,
        event.user_name,
        event.user_email,
        event.visitor_id,
        event.session_id,
        event.error_type,
        event.error_message,
        event.error_stacktrace,
        json.dumps(dict(event.meta), separators=(",", ":")) if event.meta else None,
    )
