"""One way to read either store: a read-only connection and its SQL dialect, from a path or a URL.

The report and the dashboard write each query once, in SQL both backends run, with ``?``
parameters; a ``Dialect`` spells the few things that differ (an index hint, joining
strings, rounding, the keys of a JSON object, the plan of a query). ``open_reader`` takes
a SQLite path (or ``sqlite:///path``) or a ``postgresql://`` URL; ``as_reader`` wraps a
connection already open.
"""

from __future__ import annotations

import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, TypeVar, Union

from ..sink_urls import mask_url
from .errors import StoreUnavailable
from .sqlite.schema import TABLE, connect_readonly

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "POSTGRES",
    "SQLITE",
    "Dialect",
    "PostgresReader",
    "Reader",
    "Rows",
    "SQLiteReader",
    "Source",
    "StoreUnavailable",
    "as_reader",
    "is_postgres",
    "open_reader",
    "postgres_sql",
    "reading",
    "shown",
    "sqlite_path",
    "store_errors",
    "undecodable",
]
_T = TypeVar("_T")
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
Source = Union[str, Path]


class Rows(Protocol):
    """What ``Reader.execute`` returns: a cursor of tuples."""

    def __iter__(self) -> Iterator[Any]: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


@dataclass(frozen=True)
class Dialect:
    """How one backend spells what standard SQL leaves open.

    Args:
        name: "sqlite" or "postgresql".
        index_hint: ``{table} INDEXED BY {index}`` where the backend takes hints, else the table.
        joined_text: An aggregate joining a text column's values with ``char(31)``.
        rounded: An expression rounded half away from zero, as an integer.
        json_keys: A FROM item yielding a JSON object column's keys as ``{alias}.key``.
        json_valid: A condition true where the column holds valid JSON.
        explain: The statement prefix that shows a query's plan.
    """

    name: str
    index_hint: str
    joined_text: str
    rounded: str
    json_keys: str
    json_valid: str
    explain: str

    def indexed(self, index: str, table: str = TABLE) -> str:
        return self.index_hint.format(table=table, index=index)

    def join_text(self, column: str) -> str:
        return self.joined_text.format(column=column)

    def round_int(self, expression: str) -> str:
        return self.rounded.format(expression=expression)

    def keys_of(self, column: str, alias: str) -> str:
        return self.json_keys.format(column=column, alias=alias)

    def valid_json(self, column: str) -> str:
        return self.json_valid.format(column=column)


SQLITE = Dialect(
    name="sqlite",
    index_hint="{table} INDEXED BY {index}",
    joined_text="group_concat({column}, char(31))",
    rounded="CAST(round({expression}) AS INTEGER)",
    json_keys="json_each({column}) AS {alias}",
    json_valid="json_valid({column})",
    explain="EXPLAIN QUERY PLAN ",
)
POSTGRES = Dialect(
    name="postgresql",
    index_hint="{table}",
    joined_text="string_agg({column}, chr(31))",
    rounded="CAST(round(CAST({expression} AS numeric)) AS bigint)",
    # The schema's otel_json_keys() yields nothing for text that is not a JSON object.
    json_keys="LATERAL otel_json_keys({column}) AS {alias}(key)",
    json_valid="{column} IS NOT NULL",
    explain="EXPLAIN (FORMAT TEXT) ",
)


class Reader(ABC):
    """A read-only connection to a store and its dialect; ``execute`` takes ``?`` parameters.

    Each backend says how it executes and how it opens a snapshot (the abstract methods)."""

    dialect: Dialect = SQLITE

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def close(self) -> None:
        self.connection.close()

    def end(self) -> None:
        """End the read transaction (nothing was written: it rolls back)."""
        self.connection.execute("ROLLBACK")

    @abstractmethod
    def execute(self, sql: str, params: Sequence[object] = ()) -> Rows:
        """The rows of ``sql`` with its ``?`` parameters bound."""

    @property
    @abstractmethod
    def in_transaction(self) -> bool:
        """Whether a read transaction is open."""

    @abstractmethod
    def begin(self) -> None:
        """Start a read-only transaction: every later read sees one snapshot until ``end``."""

    @abstractmethod
    def begin_together(self, others: Sequence[Reader]) -> bool:
        """Begin a transaction here and on ``others``; True when all share one snapshot."""

    def plan(self, sql: str, params: Sequence[object] = ()) -> list[str]:
        """The planner's steps for ``sql``, one text line each."""
        return [str(row[-1]) for row in self.execute(self.dialect.explain + sql, params)]

    @contextmanager
    def read_transaction(self) -> Iterator[None]:
        """One read transaction around the block, unless one is already open."""
        if self.in_transaction:
            yield
            return
        self.begin()
        try:
            yield
        finally:
            self.end()


# The app appends rows (each new row's id above all others) and deletes the oldest (retention),
# so the lowest and highest ids name a state of the table; both are read from the rowid tree.
_STATE = f"SELECT (SELECT min(id) FROM {TABLE}), (SELECT max(id) FROM {TABLE})"
_SNAPSHOT_ATTEMPTS = 3


class SQLiteReader(Reader):
    """A ``sqlite3`` connection (``connect_readonly``); statements pass through unchanged."""

    dialect = SQLITE
    connection: sqlite3.Connection

    def execute(self, sql: str, params: Sequence[object] = ()) -> Rows:
        return self.connection.execute(sql, params)

    @property
    def in_transaction(self) -> bool:
        return self.connection.in_transaction

    def begin(self) -> None:
        self.connection.execute("BEGIN")

    def begin_together(self, others: Sequence[Reader]) -> bool:
        """A transaction's snapshot is taken at its first read: a commit landing between two of
        them shows as differing states, and the transactions are begun again."""
        readers = [self, *others]
        for _ in range(_SNAPSHOT_ATTEMPTS):
            states = set()
            for reader in readers:
                reader.begin()
                states.add(reader.execute(_STATE).fetchone())
            if len(states) == 1:
                return True
            for reader in readers:
                reader.end()
        return False


_SNAPSHOT_ID = re.compile(r"^[0-9A-F-]+$")
_TOKENS = re.compile(r"'(?:[^']|'')*'|\?|%")


@lru_cache(maxsize=256)
def postgres_sql(sql: str) -> str:
    """``sql`` with ``?`` parameters as psycopg's ``%s`` (and ``%`` doubled), quoted text untouched."""

    def token(match: re.Match[str]) -> str:
        text = match.group()
        return "%s" if text == "?" else "%%" if text == "%" else text

    return _TOKENS.sub(token, sql)


class PostgresReader(Reader):
    """A psycopg 3 connection in autocommit mode; reads run in read-only repeatable-read transactions."""

    dialect = POSTGRES
    connection: psycopg.Connection[Any]

    def execute(self, sql: str, params: Sequence[object] = ()) -> Rows:
        return self.connection.execute(postgres_sql(sql), tuple(params))

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self.connection.info.transaction_status != TransactionStatus.IDLE

    def begin(self) -> None:
        self.connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def begin_together(self, others: Sequence[Reader]) -> bool:
        """The others import this transaction's snapshot (``pg_export_snapshot``): always shared."""
        self.begin()
        (snapshot,) = self.execute("SELECT pg_export_snapshot()").fetchone()
        if not _SNAPSHOT_ID.match(str(snapshot)):
            return False  # not the form SET TRANSACTION SNAPSHOT takes (it binds no parameter)
        for other in others:
            other.begin()
            other.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        return True

    def plan(self, sql: str, params: Sequence[object] = ()) -> list[str]:
        return [str(row[0]) for row in self.execute(self.dialect.explain + sql, params)]


def is_postgres(source: object) -> bool:
    """True for a ``postgresql://`` (or ``postgres://``) URL."""
    return isinstance(source, str) and source.strip().lower().startswith(POSTGRES_SCHEMES)


def shown(source: Source) -> str:
    """How to name a store in messages: a URL with its credentials masked, or the path."""
    return mask_url(str(source)) if is_postgres(source) else str(source)


def sqlite_path(source: Source) -> Path:
    """The file of a SQLite source: a path, or ``sqlite:///relative`` / ``sqlite:////absolute``."""
    text = str(source)
    return Path(text[len("sqlite:///") :] if text.lower().startswith("sqlite:///") else text)


def open_reader(source: Source, *, lenient: bool = False) -> Reader:
    """A reader of the store at ``source``; raise ``FileNotFoundError``, ``SchemaError`` or
    ``StoreUnavailable`` when there is none to read.

    Args:
        source: A SQLite path or ``sqlite:///path``, or a ``postgresql://`` URL.
        lenient: SQLite only: read text that is not UTF-8 with replacement characters.
    """
    if is_postgres(source):
        from .postgres.connection import connect_reader

        return PostgresReader(connect_reader(str(source).strip()))
    connection = connect_readonly(sqlite_path(source))
    if lenient:
        connection.text_factory = _LENIENT_TEXT
    return SQLiteReader(connection)


def as_reader(source: Union[Reader, sqlite3.Connection]) -> Reader:
    """A reader for an open connection (left open) or the reader itself."""
    return SQLiteReader(source) if isinstance(source, sqlite3.Connection) else source


# Text that is not UTF-8 (only another program can store it) is read with replacement
# characters; only on a second pass, as a Python text factory slows every read by a third.
_LENIENT_TEXT = partial(str, encoding="utf-8", errors="replace")


def undecodable(exc: BaseException) -> bool:
    """True for SQLite's error on text that is not UTF-8 (read again leniently)."""
    return isinstance(exc, sqlite3.OperationalError) and "decode" in str(exc)


def reading(source: Source, work: Callable[[Reader], _T]) -> _T:
    """``work`` on a reader of the store at ``source``, closed afterwards; done again with text that
    is not UTF-8 read with replacement characters when it meets some (SQLite)."""
    for lenient in (False, True):
        reader = open_reader(source, lenient=lenient)
        try:
            return work(reader)
        except sqlite3.OperationalError as exc:
            if lenient or not undecodable(exc):
                raise
        finally:
            reader.close()
    raise AssertionError("unreachable: the lenient pass returns or raises")


def store_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a store raises when it cannot be read (``psycopg.Error`` when installed)."""
    errors: list[type[BaseException]] = [sqlite3.Error, OSError, StoreUnavailable]
    try:
        import psycopg
    except ImportError:
        pass
    else:
        errors.append(psycopg.Error)
    return tuple(errors)
