"""The embedded analytics store: its schema, migrations and connections, for writers and readers.

WAL mode lets readers (the report, the dashboard) read while the app writes; each batch is
one transaction, so a crash never leaves half a batch; ``event_id`` is unique and inserts
ignore duplicates, so a batch retried after an ambiguous failure is stored once. Timestamps
are integer microseconds since the epoch (UTC): compact, and range scans on them use the
index. The schema is versioned with ``PRAGMA user_version``; a database written by a newer
version of this package is refused instead of being misread.

The columns are the fields of ``EventRecord`` in order, so an event is inserted as it is:
a new event field becomes a new column here (``migrate`` adds it to existing stores)
without this module naming it.
"""

from __future__ import annotations

import sqlite3
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from itertools import chain, compress, repeat
from operator import itemgetter, ne
from pathlib import Path
from typing import Optional, Union

from ...analytics.events import FIELDS, EventRecord

SCHEMA_VERSION = 6
TABLE = "events"
WRITERS = "writers"  # per writing process: events its transactions stored (store/sqlite/inflight.py)
SALTS = "visitor_salts"  # the visitor-id salt of each UTC day still in use (store/sqlite/salts.py)

# A field whose stored column has another name.
_COLUMN_NAMES = {"meta_json": "meta"}
COLUMNS: tuple[str, ...] = tuple(_COLUMN_NAMES.get(field, field) for field in FIELDS)

_SQL_TYPES = {int: "INTEGER", float: "REAL", str: "TEXT"}


def column_type(field: str, types: Mapping[type, str] = _SQL_TYPES) -> str:
    """The column type of an event field from its type hint, in ``types`` (``NOT NULL`` when required)."""
    hint = typing.get_type_hints(EventRecord)[field]
    required = type(None) not in typing.get_args(hint)
    base = next((arg for arg in (hint, *typing.get_args(hint)) if arg in types), str)
    return types[base] + (" NOT NULL" if required else "")


def _column_definitions() -> str:
    return ", ".join(f"{column} {column_type(field)}" for field, column in zip(FIELDS, COLUMNS))


# Each entry moves the schema from version N to N+1; columns added to EventRecord later are
# added by ``_add_missing_columns``, which needs no version.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        f"CREATE TABLE IF NOT EXISTS {TABLE} (id INTEGER PRIMARY KEY, {_column_definitions()})",
        # Rows append in time order to the rowid tree; event_id is unique for idempotent retries.
        f"CREATE UNIQUE INDEX IF NOT EXISTS {TABLE}_event_id ON {TABLE} (event_id)",
        # The report filters every query by (type, time window): one covering index serves all
        # the pageview sections without touching the table, the others serve errors and events.
        f"CREATE INDEX IF NOT EXISTS {TABLE}_pageviews ON {TABLE} "
        "(type, ts_us, page, visitor_id, referrer, locale, utm_source)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_type_name_ts ON {TABLE} (type, name, ts_us)",
    ),
    (
        # Unique on (time, id): as idempotent as event_id alone (an event's time is derived
        # from its span, like its id), but appended in time order, so inserts stop paying a
        # random B-tree walk per event, and retention deletes the oldest by this index.
        f"DROP INDEX IF EXISTS {TABLE}_event_id",
        f"CREATE UNIQUE INDEX IF NOT EXISTS {TABLE}_ts_event ON {TABLE} (ts_us, event_id)",
    ),
    (
        # The dashboard: status mix, durations, campaigns and a user's or session's journey per
        # window, from one covering index. Led by time like the table, it is appended to; indexes
        # led by user or session id cost a random B-tree walk per event (half the insert rate).
        f"CREATE INDEX IF NOT EXISTS {TABLE}_requests ON {TABLE} "
        "(type, ts_us, page, status_code, duration_ms, utm_campaign, user_id, session_id)",
    ),
    (
        # What each live writer process stored, updated in its batches' transactions: a later
        # start compares it with what the process had accepted, to count what a kill -9 took.
        f"CREATE TABLE IF NOT EXISTS {WRITERS} (token TEXT PRIMARY KEY, stored INTEGER NOT NULL)",
    ),
    (
        # Today's and the next day's visitor-id salts (UTC day number), shared by every writer.
        f"CREATE TABLE IF NOT EXISTS {SALTS} (day INTEGER PRIMARY KEY, salt BLOB NOT NULL)",
    ),
    (
        # The report's device table (pageviews and visitors by device type, browser and OS),
        # sessions (grouped with the visitors, by session id where the app gives one), the
        # service and environment filters, and the campaign terms and contents, all from the two
        # covering indexes: their entries widen, and no index is added (each one costs every
        # insert and every commit its own pages).
        f"DROP INDEX IF EXISTS {TABLE}_pageviews",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_pageviews ON {TABLE} (type, ts_us, page, visitor_id, "
        "referrer, locale, utm_source, device_type, browser, os, session_id, service_name, "
        "deployment_environment)",
        f"DROP INDEX IF EXISTS {TABLE}_requests",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_requests ON {TABLE} (type, ts_us, page, status_code, "
        "duration_ms, utm_campaign, user_id, session_id, utm_term, utm_content, service_name, "
        "deployment_environment)",
    ),
)
_VALUES = f"({', '.join('?' * len(COLUMNS))})"
INSERT = f"INSERT OR IGNORE INTO {TABLE} ({', '.join(COLUMNS)}) VALUES {_VALUES}"
# Rows per multi-row INSERT (one statement step for them all). SQLite before 3.32 takes at
# most 999 bound parameters a statement, so the chunk shrinks to fit. With the device fields
# (42 columns) 64 rows a statement cost 5-8 % less CPU an event than 32 (fewer statement
# steps and index-cursor seeks a batch); 128 saves little more and holds the GIL twice as
# long between the writer's pauses (binding holds it: ~0.1 ms for 64 rows).
_MAX_PARAMETERS = 32_766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
CHUNK = max(1, min(64, _MAX_PARAMETERS // len(COLUMNS)))
MAX_SHAPES = 64  # column sets with their own statements; beyond, chunks bind every column
_ALL_COLUMNS = tuple(range(len(COLUMNS)))
_NONES = [(None,) * size for size in range(CHUNK + 1)]
_Shape = tuple[str, Callable[[EventRecord], tuple[object, ...]]]
_shapes: dict[tuple[tuple[int, ...], int], _Shape] = {}


def insert_events(
    connection: sqlite3.Connection,
    events: Sequence[EventRecord],
    between: Optional[Callable[[], None]] = None,
) -> None:
    """Insert events (``INSERT OR IGNORE``), ``CHUNK`` rows a statement, in the caller's transaction.

    An event is its row (the columns are its fields in order). A typical event leaves a
    third of its fields empty (no query, referrer, UTM, session, error, meta), and
    binding a ``None`` costs ``sqlite3`` more than binding a string (the adaptation lookup,
    ``_bind_none_fast``). So each chunk's statement names only the columns some row of the
    chunk fills; the others are NULL as they would be when bound (no column has a default),
    which stores the same row. A chunk shorter than ``CHUNK`` (a batch's tail) goes in
    power-of-two pieces, so a handful of statements serves every batch size; ``sqlite3``
    keeps them prepared. ``between`` runs after each chunk (the writer steps aside there).
    """
    start, total = 0, len(events)
    while start < total:
        left = total - start
        size = CHUNK if left >= CHUNK else 1 << (left.bit_length() - 1)
        rows = events[start : start + size]
        start += size
        # The columns some row fills: a column tuple differs from all-None.
        filled = tuple(compress(_ALL_COLUMNS, map(ne, zip(*rows), repeat(_NONES[size]))))
        statement, pick = _shape(filled, size)
        connection.execute(statement, tuple(chain.from_iterable(map(pick, rows))))
        if between is not None:
            between()


def _shape(filled: tuple[int, ...], size: int) -> _Shape:
    """The statement inserting ``size`` rows of the ``filled`` columns, and what picks them.

    Past ``MAX_SHAPES`` column sets (events that vary without end), chunks bind every
    column as before; a set of one column would make ``itemgetter`` return a bare value.
    """
    shape = _shapes.get((filled, size))
    if shape is None:
        if len(filled) < 2 or len(_shapes) >= MAX_SHAPES:
            filled = _ALL_COLUMNS
            shape = _shapes.get((filled, size))
        if shape is None:
            values = f"({', '.join('?' * len(filled))})"
            columns = ", ".join(COLUMNS[index] for index in filled)
            statement = f"INSERT OR IGNORE INTO {TABLE} ({columns}) VALUES {', '.join([values] * size)}"
            shape = _shapes[(filled, size)] = (statement, itemgetter(*filled))
    return shape


# Pages of 16 KiB rather than SQLite's 4 KiB: an event's row and its four index entries fill
# fewer pages, so each transaction of 1 000 events writes a quarter as many pages to the WAL
# (and the checkpoints copy a quarter as many back), which saves CPU an event, most of it the
# kernel's. Readers scan the same covering indexes in fewer, larger pages.
PAGE_SIZE = 16_384
WAL_CHECKPOINT_BYTES = 4 * 1024 * 1024


class SchemaError(Exception):
    """The database was written by a newer version of otel-user-tracking."""


def connect(path: Union[str, Path], *, timeout: float = 5.0) -> sqlite3.Connection:
    """Open (creating if needed) and migrate a store; WAL mode, ``busy_timeout`` set."""
    _bind_none_fast()
    connection = sqlite3.connect(str(path), timeout=timeout, check_same_thread=False, isolation_level=None)
    try:
        # For a new file only (an existing one keeps its page size): see PAGE_SIZE.
        connection.execute(f"PRAGMA page_size={PAGE_SIZE}")
        connection.execute("PRAGMA journal_mode=WAL")
        # Checkpoint at the same WAL size whatever the page size (SQLite counts pages: 1 000
        # of 4 KiB by default), so the WAL file stays at about 4 MiB.
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        connection.execute(f"PRAGMA wal_autocheckpoint={max(1, WAL_CHECKPOINT_BYTES // page_size)}")
        connection.execute("PRAGMA synchronous=NORMAL")
        # Keep the indexes' pages in memory (32 MiB): the report's scans and the writes reuse them.
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
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise SchemaError(_newer(path, version))
    except BaseException:  # a newer store, or a file that is not a database
        connection.close()
        raise
    return connection


def migrate(connection: sqlite3.Connection) -> None:
    """Bring the schema to ``SCHEMA_VERSION`` and the columns to ``EventRecord``'s, in one transaction."""
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise SchemaError(_newer("the database", version))
    if version == SCHEMA_VERSION and not _missing_columns(connection):
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        # Columns first: a migration may index a column added to EventRecord since the store was made.
        for column in _missing_columns(connection):
            connection.execute(f"ALTER TABLE {TABLE} ADD COLUMN {column} {column_type(_field(column))}")
        for statements in _MIGRATIONS[version:]:
            for statement in statements:
                connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _missing_columns(connection: sqlite3.Connection) -> list[str]:
    present = {row[1] for row in connection.execute(f"PRAGMA table_info({TABLE})")}
    return [column for column in COLUMNS if present and column not in present]


def _field(column: str) -> str:
    return FIELDS[COLUMNS.index(column)]


def _newer(path: object, version: int) -> str:
    return (
        f"{path} has schema version {version}, newer than this otel-user-tracking "
        f"understands ({SCHEMA_VERSION}); upgrade the package or use another file"
    )


def _bind_none_fast() -> None:
    """Let ``sqlite3`` bind ``None`` without its adaptation protocol lookup.

    Before Python 3.13 every ``None`` parameter goes through ``microprotocols.adapt``, which
    looks up ``__adapt__``/``__conform__`` and raises internally: about 0.13 µs per NULL,
    more than half the cost of inserting an event (most of its fields are NULL). An
    adapter registered for ``NoneType`` returns ``None`` unchanged, which sqlite3 binds as
    NULL exactly as before, from a dict lookup. Behaviour is identical for every user of
    sqlite3 in the process; 3.13 has the fast path built in.
    """
    if sys.version_info < (3, 13):
        key = (type(None), sqlite3.PrepareProtocol)
        sqlite3.adapters.setdefault(key, {}.get)
