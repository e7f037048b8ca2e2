"""The PostgreSQL store's schema: the same columns as SQLite's, partitioned by day, versioned.

The columns are the fields of ``EventRecord`` in order (``meta_json`` stored as ``meta``,
as in SQLite), so a new event field becomes a new column on the next start of a writer
(``migrate`` adds it to the partitioned table, hence to every partition). Text columns
sort and compare bytewise (``COLLATE "C"``), as SQLite's do, so the report orders ties
the same on both. ``events`` is partitioned by range of ``ts_us``, one partition a UTC
day (``events_pYYYYMMDD``), created by the writers ahead of the events that need them;
retention drops whole partitions. ``(ts_us, event_id)`` is unique, so a retried batch is
stored once. The version is in ``schema_version``; a newer store is refused.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from ...analytics.events import FIELDS
from ..sqlite.schema import COLUMNS, TABLE, SchemaError, column_type

SCHEMA_VERSION = 1
VERSION_TABLE = "schema_version"
DAY_US = 86_400_000_000
# Serialises migrations and partition creation among every writer of the database.
SCHEMA_LOCK = 0x6F74_656C_7573  # "otelus"
_PG_TYPES = {int: "bigint", float: "double precision", str: 'text COLLATE "C"'}


def pg_type(field: str) -> str:
    """The PostgreSQL type of an event field, from its type hint (``NOT NULL`` when required)."""
    return column_type(field, _PG_TYPES)


def field_of(column: str) -> str:
    return FIELDS[COLUMNS.index(column)]


def _column_definitions() -> str:
    return ", ".join(f"{column} {pg_type(field)}" for field, column in zip(FIELDS, COLUMNS))


# Each entry moves the schema from version N to N+1 (version 0: no schema); columns added to
# EventRecord later are added by ``missing_columns``, which needs no version.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        f"CREATE SEQUENCE IF NOT EXISTS {TABLE}_id_seq CACHE 1000",
        f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigint NOT NULL DEFAULT nextval('{TABLE}_id_seq'), "
        f"{_column_definitions()}) PARTITION BY RANGE (ts_us)",
        f"ALTER SEQUENCE {TABLE}_id_seq OWNED BY {TABLE}.id",
        # Idempotent retries; includes the partition key, as a partitioned unique index must.
        f"CREATE UNIQUE INDEX IF NOT EXISTS {TABLE}_ts_event ON {TABLE} (ts_us, event_id)",
        # The report's pageview sections (SQLite's events_pageviews columns) and the visitor
        # journey: index-only scans.
        f"CREATE INDEX IF NOT EXISTS {TABLE}_pageviews ON {TABLE} (type, ts_us) "
        "INCLUDE (page, visitor_id, referrer, locale, utm_source, device_type, browser, os, session_id, "
        "service_name, deployment_environment)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_type_name_ts ON {TABLE} (type, name, ts_us)",
        # The dashboard's status mix, durations, campaigns, user and session journeys.
        f"CREATE INDEX IF NOT EXISTS {TABLE}_requests ON {TABLE} (type, ts_us) "
        "INCLUDE (page, status_code, duration_ms, utm_campaign, user_id, session_id, utm_term, utm_content, "
        "service_name, deployment_environment)",
        # The keys of a custom event's meta; nothing for text that is not a JSON object.
        "CREATE OR REPLACE FUNCTION otel_json_keys(document text) RETURNS SETOF text "
        "LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$ BEGIN "
        "IF document IS NULL THEN RETURN; END IF; "
        "RETURN QUERY SELECT jsonb_object_keys(document::jsonb); "
        "EXCEPTION WHEN others THEN RETURN; END $$",
        # The visitor-id salt of each UTC day still in use (postgres/salts.py).
        "CREATE TABLE IF NOT EXISTS visitor_salts (day integer PRIMARY KEY, salt bytea NOT NULL)",
    ),
)


def partition_name(day_start_us: int) -> str:
    day = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=day_start_us)
    return f"{TABLE}_p{day:%Y%m%d}"


def day_of(ts_us: int) -> int:
    """The start of the UTC day holding ``ts_us``, in microseconds."""
    return ts_us - ts_us % DAY_US


def create_partition(day_start_us: int) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {partition_name(day_start_us)} PARTITION OF {TABLE} "
        f"FOR VALUES FROM ({day_start_us}) TO ({day_start_us + DAY_US})"
    )


__all__ = ["SchemaError"]  # the SQLite store's: one error for a newer store of either backend


def newer(where: str, version: int) -> str:
    return (
        f"{where} has schema version {version}, newer than this otel-user-tracking "
        f"understands ({SCHEMA_VERSION}); upgrade the package"
    )
