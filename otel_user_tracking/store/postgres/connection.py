"""Connections to the PostgreSQL store: bounded timeouts, credentials never in a message, migrations.

A URL's password, user and query (which may hold ``password=``) never appear in a message:
errors name the store by its masked URL and psycopg's words only (``StoreUnavailable``).
"""

from __future__ import annotations

from typing import Any

from ...sink_urls import mask_url
from ..errors import StoreUnavailable
from ..sqlite.schema import COLUMNS, TABLE
from .schema import (
    MIGRATIONS,
    SCHEMA_LOCK,
    SCHEMA_VERSION,
    VERSION_TABLE,
    SchemaError,
    field_of,
    newer,
    pg_type,
)

CONNECT_TIMEOUT = 5  # seconds; whole seconds, as libpq takes them
# A server that vanishes mid-batch (a network partition: no reset, no answer) is noticed within
# about 30 s instead of the kernel's 15 minutes: keepalives while idle, a cap on unacknowledged sends.
_LIVENESS = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}
INSTALL_HINT = "the PostgreSQL store needs psycopg 3: pip install 'otel-user-tracking[postgres]'"


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise StoreUnavailable(INSTALL_HINT) from None
    return psycopg


def explain(exc: BaseException) -> str:
    """psycopg's first line for an error, which names no password (libpq never prints one)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def connect(url: str, *, application_name: str, timeout: float = CONNECT_TIMEOUT) -> Any:
    """An autocommit psycopg connection to ``url``, or ``StoreUnavailable`` naming it masked.

    The timeouts and keepalives below apply unless the URL sets its own.
    """
    psycopg = _psycopg()
    try:
        given = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:  # libpq's words may quote the URL's parts, its password among them
        raise StoreUnavailable(f"PostgreSQL store {mask_url(url)}: the URL cannot be parsed") from None
    try:
        defaults = {"connect_timeout": max(1, int(timeout)), **_LIVENESS}
        return psycopg.connect(
            url,
            autocommit=True,
            application_name=application_name,
            **{name: value for name, value in defaults.items() if name not in given},
        )
    except psycopg.Error as exc:
        raise StoreUnavailable(f"PostgreSQL store {mask_url(url)}: {explain(exc)}") from None


def connect_reader(url: str) -> Any:
    """A read-only connection to an existing store; ``FileNotFoundError`` when it has no schema."""
    psycopg = _psycopg()
    connection = connect(url, application_name="otel-user-tracking reader")
    try:
        connection.execute("SET default_transaction_read_only = on")
        connection.execute("SET statement_timeout = 0")
        version = schema_version(connection)
        if version == 0:
            raise FileNotFoundError(f"no otel-user-tracking store in {mask_url(url)} (no {TABLE} table yet)")
        if version > SCHEMA_VERSION:
            raise SchemaError(newer(mask_url(url), version))
    except psycopg.Error as exc:
        connection.close()
        raise StoreUnavailable(f"PostgreSQL store {mask_url(url)}: {explain(exc)}") from None
    except BaseException:
        connection.close()
        raise
    return connection


def schema_version(connection: Any) -> int:
    """The store's version; 0 when it has no schema yet."""
    exists = connection.execute("SELECT to_regclass(%s)", (VERSION_TABLE,)).fetchone()[0]
    if exists is None:
        return 0
    row = connection.execute(f"SELECT max(version) FROM {VERSION_TABLE}").fetchone()
    return int(row[0] or 0)


def missing_columns(connection: Any) -> list[str]:
    present = {
        row[0]
        for row in connection.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s",
            (TABLE,),
        )
    }
    return [column for column in COLUMNS if present and column not in present]


def migrate(connection: Any) -> None:
    """Bring the schema to ``SCHEMA_VERSION`` and the columns to ``EventRecord``'s, in one
    transaction under an advisory lock (every writer of a fleet starts it at once)."""
    version = schema_version(connection)
    if version > SCHEMA_VERSION:
        raise SchemaError(newer("the PostgreSQL store", version))
    if version == SCHEMA_VERSION and not missing_columns(connection):
        return
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        connection.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version integer NOT NULL)")
        version = schema_version(connection)  # another writer may have migrated meanwhile
        if version > SCHEMA_VERSION:
            raise SchemaError(newer("the PostgreSQL store", version))
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                connection.execute(statement)
        for column in missing_columns(connection):
            connection.execute(f"ALTER TABLE {TABLE} ADD COLUMN {column} {pg_type(field_of(column))}")
        if version < SCHEMA_VERSION:
            connection.execute(f"DELETE FROM {VERSION_TABLE}")
            connection.execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES (%s)", (SCHEMA_VERSION,))
