"""What the store (SQLite or PostgreSQL) says for a time window: traffic, sources, errors, custom events.

``build_report`` runs a handful of grouped queries (each served by an index on
``(type, ...)``, each written once for both backends: ``reader.py``) and returns a frozen
``Report``; ``render_table`` and ``render_json`` only format it. Unique visitors are
distinct cookieless ``visitor_id`` values: a logged-in user has one too, and requests with
``Sec-GPC``/``DNT`` have none, so they count as pageviews but not as visitors.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any, Callable, Optional, Sequence, Union

from .clients import DeviceRow, FilteredRow, devices, filtered_requests
from .reader import Reader, Source, as_reader, open_reader, undecodable
from .sqlite.schema import TABLE

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
    # Requests of bots, monitors and scripts, not pageviews (ignore_bots); pageviews by device.
    filtered: tuple[FilteredRow, ...] = ()
    devices: tuple[DeviceRow, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_since(text: str, *, now: Optional[datetime] = None) -> datetime:
    """``30m``, ``24h``, ``7d``, ``2w`` before now, or an ISO date/time (UTC when no zone).

    Raises ``ValueError`` (saying what to give) for anything else, a date that has no UTC
    time (``0001-01-01T00:00:00+14:00``) included.
    """
    current = now or datetime.now(timezone.utc)
    match = _DURATION.match(text)
    try:
        if match:
            when = current - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        else:
            when = datetime.fromisoformat(text.strip())
            when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
        when.astimezone(timezone.utc).timestamp()  # every use of the window needs both
    except (ValueError, OverflowError):
        raise ValueError(
            f"--since {text!r}: use a duration like 30m, 24h, 7d, 2w or an ISO date like 2026-11-01 "
            "(from year 1 to 9999 in UTC)"
        ) from None
    return when


def _us(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000)


def iso_time(ts_us: object, timespec: str = "seconds") -> str:
    """A stored time (integer microseconds) as ISO 8601 UTC; "?" for a value that is not one."""
    if not isinstance(ts_us, (int, float)) or isinstance(ts_us, bool):
        return "?"
    try:
        when = datetime.fromtimestamp(ts_us / 1e6, tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        return "?"
    return when.isoformat(timespec=timespec)


StoreSource = Union[Source, Reader, sqlite3.Connection]


def build_report(source: StoreSource, since: datetime, limit: int = 10) -> Report:
    """Query the store at ``source`` (a path, a ``postgresql://`` URL, a reader or a SQLite
    connection) for events since ``since``.

    The report is one snapshot of the store: every number is of the same moment, however
    the app writes meanwhile. Unique visitors take longest: they are counted in two halves
    of the visitor ids, which add up exactly (each visitor is in one half). Given a path or
    a URL, each half runs on its own connection in a thread while this one runs the other
    queries (SQLite releases the GIL; PostgreSQL works in its own processes), once the three
    read transactions are seen to share a snapshot (``Reader.begin_together``); else all runs
    on one connection. Given a connection, all runs on it, in the caller's transaction or in
    one of its own.
    """
    since_us = _us(since)
    if isinstance(source, (sqlite3.Connection, Reader)):
        reader = as_reader(source)
        with reader.read_transaction():
            return _query(reader, since_us, limit, since)
    try:
        return _report_at(source, since_us, limit, since, lenient=False)
    except sqlite3.OperationalError as exc:
        if not undecodable(exc):
            raise
        return _report_at(source, since_us, limit, since, lenient=True)


def _report_at(source: Source, since_us: int, limit: int, since: datetime, lenient: bool) -> Report:
    readers: list[Reader] = []
    try:
        for _ in range(1 + len(_VISITOR_HALVES)):
            readers.append(open_reader(source, lenient=lenient))
        main, *others = readers
        if not main.begin_together(others):
            with main.read_transaction():
                return _query(main, since_us, limit, since)
        with ThreadPoolExecutor(max_workers=len(_VISITOR_HALVES)) as pool:
            futures = [
                pool.submit(_visitor_half, other, since_us, half)
                for other, half in zip(others, _VISITOR_HALVES)
            ]
            return _query(main, since_us, limit, since, [future.result for future in futures])
    finally:
        for reader in readers:
            reader.close()  # ends its read transaction


def latest_errors(db: Reader, columns: str, since_us: int, limit: Optional[int] = None) -> list[Any]:
    """Per error type (``?`` for none): its count, latest time, and ``columns`` of its latest event.

    Most frequent first (a missing type first among equals), at most ``limit`` rows.
    """
    cut = "" if limit is None else f" LIMIT {int(limit)}"
    return db.execute(
        f"SELECT coalesce(error_type, '?'), n, ts_us, {columns} FROM ("
        f"SELECT error_type, ts_us, {columns}, COUNT(*) OVER (PARTITION BY error_type) AS n, "
        "ROW_NUMBER() OVER (PARTITION BY error_type ORDER BY ts_us DESC, id DESC) AS latest "
        f"FROM {TABLE} WHERE type = 'error' AND ts_us >= ?) AS errors "
        f"WHERE latest = 1 ORDER BY n DESC, error_type IS NOT NULL, error_type{cut}",
        (since_us,),
    ).fetchall()


def _query(
    db: Reader,
    since_us: int,
    limit: int,
    since: datetime,
    visitor_halves: Optional[Sequence[Callable[[], Optional[_Half]]]] = None,
) -> Report:
    """The report from ``db``; the visitor halves are counted on it too unless given."""
    window = "ts_us >= ?"
    # Pageview sections read millions of rows: pinned to the index covering them, which SQLite's
    # planner passed over for a newer, non-covering one when sqlite_stat1 predated it.
    pageviews_source = db.dialect.indexed(f"{TABLE}_pageviews")

    def counts(column: str, type_: str = "pageview") -> tuple[CountRow, ...]:
        source = pageviews_source if type_ == "pageview" else TABLE
        return top_values(db, column, since_us, limit, type_=type_, source=source)

    totals = dict(
        db.execute(
            f"SELECT type, COUNT(*) FROM {TABLE} WHERE type IN ('error', 'custom') AND {window} "
            "GROUP BY type",
            (since_us,),
        ).fetchall()
    )
    errors = latest_errors(db, "error_message, trace_id", since_us, limit)
    referrers, locales, utm_sources = counts("referrer"), counts("locale"), counts("utm_source")
    custom = counts("name", "custom")
    if visitor_halves is None:
        visitor_halves = [partial(_visitor_half, db, since_us, half) for half in _VISITOR_HALVES]
    pages, visitors = _pages(db, since_us, [half() for half in visitor_halves])
    ranked = sorted(pages, key=lambda page: (-pages[page][0], page is not None, page or ""))[:limit]
    return Report(
        since=since.astimezone(timezone.utc).isoformat(timespec="seconds"),
        pageviews=sum(views for views, _ in pages.values()),
        visitors=visitors,
        errors=int(totals.get("error", 0)),
        custom_events=int(totals.get("custom", 0)),
        routes=tuple(RouteRow(str(page), *pages[page]) for page in ranked),
        referrers=referrers,
        locales=locales,
        utm_sources=utm_sources,
        error_types=tuple(
            ErrorRow(str(kind), int(n), iso_time(last), str(message or ""), str(trace_id))
            for kind, n, last, message, trace_id in errors
        ),
        custom=custom,
        filtered=filtered_requests(db.execute, since_us),
        devices=devices(db.execute, since_us, limit, pageviews_source),
    )


def top_values(
    db: Union[Reader, sqlite3.Connection],
    column: str,
    since_us: int,
    limit: int,
    *,
    type_: str = "pageview",
    source: str = TABLE,
) -> tuple[CountRow, ...]:
    """The most frequent non-null values of ``column`` among events of ``type_`` since ``since_us``.

    ``source`` is the table, or the table with an index hint (``Dialect.indexed``) that covers
    ``column``.
    """
    rows = (
        as_reader(db)
        .execute(
            f"SELECT {column}, COUNT(*) AS n FROM {source} WHERE type = ? AND ts_us >= ? "
            f"AND {column} IS NOT NULL GROUP BY {column} ORDER BY n DESC, {column} LIMIT ?",
            (type_, since_us, limit),
        )
        .fetchall()
    )
    return tuple(CountRow(str(value), int(count)) for value, count in rows)


_SEPARATOR = "\x1f"
# Visitor ids are hex digests, so these halves are about even; any other id is in exactly one.
_VISITOR_HALVES = ("(visitor_id IS NULL OR visitor_id < '8')", "visitor_id >= '8'")
PageCounts = dict[Optional[str], tuple[int, int]]  # page -> (pageviews, unique visitors)
# Of one half of the visitors: pageviews per page, unique visitors per page, unique visitors.
_Half = tuple["Counter[Optional[str]]", "Counter[Optional[str]]", int]


def _visitor_half(db: Reader, since_us: int, half: str) -> Optional[_Half]:
    """Pageviews and unique visitors per page, and unique visitors, for one half of the visitors.

    Grouping by visitor sorts the pageviews once; each visitor's pages come back joined and
    Python counts them, a third less work than ``COUNT(DISTINCT)`` overall and per page. A
    page holding the separator would be split wrongly: the per-visitor count catches that,
    and the answer is None (``_pages_by_distinct`` counts instead).
    """
    views: Counter[Optional[str]] = Counter()
    people: Counter[Optional[str]] = Counter()
    visitors = 0
    rows = db.execute(
        f"SELECT visitor_id, COUNT(*), COUNT(page), {db.dialect.join_text('page')} "
        f"FROM {db.dialect.indexed(f'{TABLE}_pageviews')} "
        f"WHERE type = 'pageview' AND ts_us >= ? AND {half} GROUP BY visitor_id",
        (since_us,),
    )
    for visitor, count, named, joined in rows:
        seen = joined.split(_SEPARATOR) if joined is not None else []
        if len(seen) != named:
            return None
        views.update(seen)
        views[None] += count - named  # pageviews without a page
        if visitor is not None:
            visitors += 1
            distinct: set[Optional[str]] = set(seen)
            if count > named:
                distinct.add(None)
            people.update(distinct)
    return views, people, visitors


def _pages(db: Reader, since_us: int, halves: list[Optional[_Half]]) -> tuple[PageCounts, int]:
    counted = [half for half in halves if half is not None]
    if len(counted) < len(halves):
        return _pages_by_distinct(db, since_us)
    views: Counter[Optional[str]] = Counter()
    people: Counter[Optional[str]] = Counter()
    for half_views, half_people, _ in counted:
        views.update(half_views)
        people.update(half_people)
    pages = {page: (views[page], people[page]) for page in views if views[page]}
    return pages, sum(visitors for _, _, visitors in counted)


def _pages_by_distinct(db: Reader, since_us: int) -> tuple[PageCounts, int]:
    window = "type = 'pageview' AND ts_us >= ?"
    source = db.dialect.indexed(f"{TABLE}_pageviews")
    pages = db.execute(
        f"SELECT page, COUNT(*), COUNT(DISTINCT visitor_id) FROM {source} WHERE {window} GROUP BY page",
        (since_us,),
    ).fetchall()
    (visitors,) = db.execute(
        f"SELECT COUNT(DISTINCT visitor_id) FROM {source} WHERE {window}", (since_us,)
    ).fetchone()
    return {page: (int(n), int(v)) for page, n, v in pages}, int(visitors)


# What a terminal acts on instead of showing: C0 and C1 controls (ESC starts CSI and OSC
# sequences: colours, the window title, the clipboard), DEL, line and paragraph separators,
# and the bidirectional controls that reorder what is shown (U+202E, U+2066-U+2069, ...).
_BEYOND_C0 = "\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
_TERMINAL_CONTROLS = re.compile(f"[\x00-\x1f{_BEYOND_C0}]")
_JSON_UNESCAPED = re.compile(f"[{_BEYOND_C0}]")  # json escapes C0 itself; its newlines are layout


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_text(text: str) -> str:
    """``text`` with every terminal control shown as an escape (``\\x1b``, ``\\u202e``)."""
    return _TERMINAL_CONTROLS.sub(_escaped, text)


def _json_escaped(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _table(title: str, headers: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    if not rows:
        return f"{title}\n  (none)\n"
    cells = [headers, *[tuple(terminal_text(str(cell)) for cell in row) for row in rows]]
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
        f"errors {report.errors}   custom events {report.custom_events}   "
        f"filtered requests {sum(row.requests for row in report.filtered)}\n",
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
        _table(
            "Devices (pageviews)",
            ("device", "browser", "os", "pageviews", "visitors"),
            [(r.device_type, r.browser, r.os, r.pageviews, r.visitors) for r in report.devices],
        ),
        _table(
            "Filtered requests (not pageviews: bots, monitors, scripts)",
            ("client", "requests"),
            [(row.client, row.requests) for row in report.filtered],
        ),
    ]
    if report.error_types:
        example = JAEGER_TRACE_URL.format(trace_id=terminal_text(report.error_types[0].trace_id))
        parts.append(f"Open an error's trace in Jaeger: {example}\n")
    return "\n".join(parts)


def render_json(report: Report) -> str:
    """The report as one JSON object (for scripts and dashboards), safe to print to a terminal.

    ``json`` escapes C0 controls; C1 and bidirectional controls are escaped here too
    (``\\u009b``, ``\\u202e``), which decode to the same strings.
    """
    return _JSON_UNESCAPED.sub(_json_escaped, json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
