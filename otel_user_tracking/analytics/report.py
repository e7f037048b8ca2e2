"""What the embedded SQLite store says for a time window: traffic, sources, errors, custom events.

``build_report`` runs a handful of grouped queries (each served by an index on
``(type, ...)``) and returns a frozen ``Report``; ``render_table`` and ``render_json`` only
format it. Unique visitors are distinct cookieless ``visitor_id`` values: a logged-in user
has one too, and requests with ``Sec-GPC``/``DNT`` have none, so they count as pageviews
but not as visitors.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional, Union

from .store import TABLE, connect_readonly

JAEGER_TRACE_URL = "http://localhost:16686/trace/{trace_id}"
_DURATION = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True)
class RouteRow:
    page: str
    pageviews: int
    visitors: int


@dataclass(frozen=True)
class CountRow:
    value: str
    count: int


@dataclass(frozen=True)
class ErrorRow:
    error_type: str
    count: int
    last_seen: str
    last_message: str
    trace_id: str


@dataclass(frozen=True)
class Report:
    """Everything the report shows, for events at or after ``since``."""

    since: str
    pageviews: int
    visitors: int
    errors: int
    custom_events: int
    routes: tuple[RouteRow, ...]
    referrers: tuple[CountRow, ...]
    locales: tuple[CountRow, ...]
    utm_sources: tuple[CountRow, ...]
    error_types: tuple[ErrorRow, ...]
    custom: tuple[CountRow, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_since(text: str, *, now: Optional[datetime] = None) -> datetime:
    """``30m``, ``24h``, ``7d``, ``2w`` before now, or an ISO date/time (UTC when no zone)."""
    current = now or datetime.now(timezone.utc)
    match = _DURATION.match(text)
    if match:
        return current - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--since {text!r}: use a duration like 30m, 24h, 7d, 2w or an ISO date like 2026-11-01"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _us(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000)


def _iso(ts_us: int) -> str:
    return datetime.fromtimestamp(ts_us / 1e6, tz=timezone.utc).isoformat(timespec="seconds")


def build_report(source: Union[str, Path, sqlite3.Connection], since: datetime, limit: int = 10) -> Report:
    """Query the store at ``source`` (a path or an open connection) for events since ``since``."""
    connection = source if isinstance(source, sqlite3.Connection) else connect_readonly(source)
    try:
        return _query(connection, _us(since), limit, since)
    finally:
        if connection is not source:
            connection.close()


def _query(db: sqlite3.Connection, since_us: int, limit: int, since: datetime) -> Report:
    window = "ts_us >= ?"

    def counts(column: str, type_: str = "pageview") -> tuple[CountRow, ...]:
        rows = db.execute(
            f"SELECT {column}, COUNT(*) AS n FROM {TABLE} WHERE type = ? AND {window} "
            f"AND {column} IS NOT NULL GROUP BY {column} ORDER BY n DESC, {column} LIMIT ?",
            (type_, since_us, limit),
        ).fetchall()
        return tuple(CountRow(str(value), int(count)) for value, count in rows)

    totals = dict(
        db.execute(
            f"SELECT type, COUNT(*) FROM {TABLE} WHERE type IN ('pageview', 'error', 'custom') "
            f"AND {window} GROUP BY type",
            (since_us,),
        ).fetchall()
    )
    (visitors,) = db.execute(
        f"SELECT COUNT(DISTINCT visitor_id) FROM {TABLE} WHERE type = 'pageview' AND {window}", (since_us,)
    ).fetchone()
    routes = db.execute(
        f"SELECT page, COUNT(*) AS n, COUNT(DISTINCT visitor_id) FROM {TABLE} "
        f"WHERE type = 'pageview' AND {window} GROUP BY page ORDER BY n DESC, page LIMIT ?",
        (since_us, limit),
    ).fetchall()
    # SQLite takes bare columns from the row holding MAX(ts_us): the latest message and trace.
    errors = db.execute(
        f"SELECT coalesce(error_type, '?'), COUNT(*) AS n, MAX(ts_us), error_message, trace_id FROM {TABLE} "
        f"WHERE type = 'error' AND {window} GROUP BY error_type ORDER BY n DESC, error_type LIMIT ?",
        (since_us, limit),
    ).fetchall()
    return Report(
        since=since.astimezone(timezone.utc).isoformat(timespec="seconds"),
        pageviews=int(totals.get("pageview", 0)),
        visitors=int(visitors),
        errors=int(totals.get("error", 0)),
        custom_events=int(totals.get("custom", 0)),
        routes=tuple(RouteRow(str(page), int(n), int(v)) for page, n, v in routes),
        referrers=counts("referrer"),
        locales=counts("locale"),
        utm_sources=counts("utm_source"),
        error_types=tuple(
            ErrorRow(str(kind), int(n), _iso(int(last)), str(message or ""), str(trace_id))
            for kind, n, last, message, trace_id in errors
        ),
        custom=counts("name", "custom"),
    )


def _table(title: str, headers: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    if not rows:
        return f"{title}\n  (none)\n"
    cells = [headers, *[tuple(str(cell) for cell in row) for row in rows]]
    widths = [max(len(row[index]) for row in cells) for index in range(len(headers))]
    numeric = [all(str(row[index]).isdigit() for row in rows) for index in range(len(headers))]

    def line(row: tuple[str, ...]) -> str:
        parts = [
            cell.rjust(width) if is_number else cell.ljust(width)
            for cell, width, is_number in zip(row, widths, numeric)
        ]
        return "  " + "  ".join(parts).rstrip()

    rule = "  " + "  ".join("-" * width for width in widths)
    return "\n".join([title, line(cells[0]), rule, *(line(row) for row in cells[1:])]) + "\n"


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_table(report: Report) -> str:
    """A plain-text report for a terminal."""
    parts = [
        f"otel-user-tracking report since {report.since}\n"
        f"  pageviews {report.pageviews}   unique visitors {report.visitors}   "
        f"errors {report.errors}   custom events {report.custom_events}\n",
        _table(
            "Pages",
            ("page", "pageviews", "visitors"),
            [(row.page, row.pageviews, row.visitors) for row in report.routes],
        ),
        _table(
            "Top referrers", ("referrer", "pageviews"), [(_short(r.value), r.count) for r in report.referrers]
        ),
        _table("Locales", ("locale", "pageviews"), [(r.value, r.count) for r in report.locales]),
        _table("UTM sources", ("utm_source", "pageviews"), [(r.value, r.count) for r in report.utm_sources]),
        _table(
            "Errors",
            ("type", "count", "last seen", "last message", "trace"),
            [
                (row.error_type, row.count, row.last_seen, _short(row.last_message, 40), row.trace_id)
                for row in report.error_types
            ],
        ),
        _table("Custom events", ("event", "count"), [(r.value, r.count) for r in report.custom]),
    ]
    if report.error_types:
        example = JAEGER_TRACE_URL.format(trace_id=report.error_types[0].trace_id)
        parts.append(f"Open an error's trace in Jaeger: {example}\n")
    return "\n".join(parts)


def render_json(report: Report) -> str:
    """The report as one JSON object (for scripts and dashboards)."""
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False)
