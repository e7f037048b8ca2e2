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

from .clients import DeviceRow, FilteredRow, device_rows, devices, filtered_requests
from .reader import Reader, Source, as_reader, open_reader, undecodable
from .scope import Scope, as_scope
from .sessions import EMPTY as EMPTY_SESSIONS
from .sessions import Sessions, VisitTally, sessions_by_sql
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
class ServiceRow:
    """Pageviews of one ``service.name`` and deployment environment (None: not set)."""

    service: Optional[str]
    environment: Optional[str]
    pageviews: int


@dataclass(frozen=True)
class Report:
    """Everything the report shows, for events at or after ``since`` (of ``service`` and
    ``environment`` when given)."""

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
    # Visits (sessions.py: the 30-minute rule, or the app's session id).
    sessions: Sessions = EMPTY_SESSIONS
    # The services and environments the window's pageviews came from; the filter applied.
    services: tuple[ServiceRow, ...] = ()
    service: Optional[str] = None
    environment: Optional[str] = None

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


def build_report(
    source: StoreSource,
    since: datetime,
    limit: int = 10,
    *,
    service: Optional[str] = None,
    environment: Optional[str] = None,
) -> Report:
    """Query the store at ``source`` (a path, a ``postgresql://`` URL, a reader or a SQLite
    connection) for events since ``since``, of one ``service`` and ``environment`` when given.

    The report is one snapshot of the store: every number is of the same moment, however
    the app writes meanwhile. Unique visitors take longest: they are counted in two halves
    of the visitor ids, which add up exactly (each visitor is in one half). Given a path or
    a URL, each half runs on its own connection in a thread while this one runs the other
    queries (SQLite releases the GIL; PostgreSQL works in its own processes), once the three
    read transactions are seen to share a snapshot (``Reader.begin_together``); else all runs
    on one connection. Given a connection, all runs on it, in the caller's transaction or in
    one of its own.
    """
    scope = Scope(_us(since), service, environment)
    if isinstance(source, (sqlite3.Connection, Reader)):
        reader = as_reader(source)
        with reader.read_transaction():
            return _query(reader, scope, limit, since)
    try:
        return _report_at(source, scope, limit, since, lenient=False)
    except sqlite3.OperationalError as exc:
        if not undecodable(exc):
            raise
        return _report_at(source, scope, limit, since, lenient=True)


def _report_at(source: Source, scope: Scope, limit: int, since: datetime, lenient: bool) -> Report:
    readers: list[Reader] = []
    try:
        for _ in range(1 + len(_VISITOR_HALVES)):
            readers.append(open_reader(source, lenient=lenient))
        main, *others = readers
        if not main.begin_together(others):
            with main.read_transaction():
                return _query(main, scope, limit, since)
        with ThreadPoolExecutor(max_workers=len(_VISITOR_HALVES)) as pool:
            futures = [
                pool.submit(_visitor_half, other, scope, half) for other, half in zip(others, _VISITOR_HALVES)
            ]
            return _query(main, scope, limit, since, [future.result for future in futures])
    finally:
        for reader in readers:
            reader.close()  # ends its read transaction


def latest_errors(
    db: Reader, columns: str, since: Union[int, Scope], limit: Optional[int] = None
) -> list[Any]:
    """Per error type (``?`` for none): its count, latest time, and ``columns`` of its latest event.

    Most frequent first (a missing type first among equals), at most ``limit`` rows, of the
    errors in the scope (or since a time in microseconds).
    """
    scope = as_scope(since)
    cut = "" if limit is None else f" LIMIT {int(limit)}"
    return db.execute(
        f"SELECT coalesce(error_type, '?'), n, ts_us, {columns} FROM ("
        f"SELECT error_type, ts_us, {columns}, COUNT(*) OVER (PARTITION BY error_type) AS n, "
        "ROW_NUMBER() OVER (PARTITION BY error_type ORDER BY ts_us DESC, id DESC) AS latest "
        f"FROM {TABLE} WHERE type = 'error' AND {scope.sql}) AS errors "
        f"WHERE latest = 1 ORDER BY n DESC, error_type IS NOT NULL, error_type{cut}",
        scope.params,
    ).fetchall()


def _query(
    db: Reader,
    scope: Scope,
    limit: int,
    since: datetime,
    visitor_halves: Optional[Sequence[Callable[[], Optional[_Half]]]] = None,
) -> Report:
    """The report from ``db``; the visitor halves are counted on it too unless given."""
    # Pageview sections read millions of rows: pinned to the index covering them, which SQLite's
    # planner passed over for a newer, non-covering one when sqlite_stat1 predated it.
    pageviews_source = db.dialect.indexed(f"{TABLE}_pageviews")

    def counts(column: str, type_: str = "pageview") -> tuple[CountRow, ...]:
        source = pageviews_source if type_ == "pageview" else TABLE
        return top_values(db, column, scope, limit, type_=type_, source=source)

    totals = dict(
        db.execute(
            f"SELECT type, COUNT(*) FROM {TABLE} WHERE type IN ('error', 'custom') AND {scope.sql} "
            "GROUP BY type",
            scope.params,
        ).fetchall()
    )
    errors = latest_errors(db, "error_message, trace_id", scope, limit)
    referrers, locales, utm_sources = counts("referrer"), counts("locale"), counts("utm_source")
    custom = counts("name", "custom")
    services = services_of(db, scope)
    if visitor_halves is None:
        visitor_halves = [partial(_visitor_half, db, scope, half) for half in _VISITOR_HALVES]
    pages, visitors, sessions, device_table = _pages(db, scope, [half() for half in visitor_halves], limit)
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
        filtered=filtered_requests(db.execute, scope),
        devices=device_table,
        sessions=sessions,
        services=services,
        service=scope.service,
        environment=scope.environment,
    )


def top_values(
    db: Union[Reader, sqlite3.Connection],
    column: str,
    since: Union[int, Scope],
    limit: int,
    *,
    type_: str = "pageview",
    source: str = TABLE,
) -> tuple[CountRow, ...]:
    """The most frequent non-null values of ``column`` among events of ``type_`` in the scope
    (or since a time in microseconds).

    ``source`` is the table, or the table with an index hint (``Dialect.indexed``) that covers
    ``column``.
    """
    scope = as_scope(since)
    rows = (
        as_reader(db)
        .execute(
            f"SELECT {column}, COUNT(*) AS n FROM {source} WHERE type = ? AND {scope.sql} "
            f"AND {column} IS NOT NULL GROUP BY {column} ORDER BY n DESC, {column} LIMIT ?",
            (type_, *scope.params, limit),
        )
        .fetchall()
    )
    return tuple(CountRow(str(value), int(count)) for value, count in rows)


def services_of(db: Reader, scope: Scope) -> tuple[ServiceRow, ...]:
    """The services and environments of the window's pageviews, with their counts.

    The pairs of the latest pageviews (a few thousand, read backwards along the index) are
    counted in one pass with the window's total; when they account for every pageview, that
    is the answer. Else the window's distinct pairs come from a small temporary index (no
    sort of the window) and are counted again (a grouping past 16 pairs).
    """
    pageviews = db.dialect.indexed(f"{TABLE}_pageviews")
    where = f"WHERE type = 'pageview' AND {scope.sql}"
    latest = db.execute(
        f"SELECT DISTINCT service_name, deployment_environment FROM (SELECT service_name, "
        f"deployment_environment FROM {pageviews} {where} ORDER BY type DESC, ts_us DESC "
        f"LIMIT {_LATEST}) AS latest",
        scope.params,
    ).fetchall()
    rows = _pair_counts(db, scope, latest) if latest and len(latest) <= _MAX_SUMS else None
    if rows is None:
        pairs = db.execute(
            f"SELECT DISTINCT service_name, deployment_environment FROM {pageviews} {where}", scope.params
        ).fetchall()
        if not pairs:
            return ()
        if len(pairs) > _MAX_SUMS:
            rows = db.execute(
                f"SELECT service_name, deployment_environment, COUNT(*) FROM {pageviews} {where} "
                "GROUP BY service_name, deployment_environment",
                scope.params,
            ).fetchall()
        else:
            rows = _pair_counts(db, scope, pairs, complete=True)
    ranked = sorted(rows or (), key=lambda row: (-row[2], _none_first(row[0]), _none_first(row[1])))
    return tuple(ServiceRow(service, environment, int(n)) for service, environment, n in ranked)


def _pair_counts(
    db: Reader, scope: Scope, pairs: list[Any], complete: bool = False
) -> Optional[list[tuple[Optional[str], Optional[str], int]]]:
    """Each (service, environment) pair's pageviews in one pass; None unless they are all the
    window's pageviews (``complete``: they are known to be)."""
    sums = ", ".join(
        f"SUM(CASE WHEN {_matches('service_name', service)} AND "
        f"{_matches('deployment_environment', environment)} THEN 1 ELSE 0 END)"
        for service, environment in pairs
    )
    values = [value for pair in pairs for value in pair if value is not None]
    *counts, total = db.execute(
        f"SELECT {sums}, COUNT(*) FROM {db.dialect.indexed(f'{TABLE}_pageviews')} "
        f"WHERE type = 'pageview' AND {scope.sql}",
        (*values, *scope.params),
    ).fetchone()
    if not complete and sum(int(n or 0) for n in counts) != total:
        return None  # a pair the latest pageviews lack
    return [(service, environment, int(n or 0)) for (service, environment), n in zip(pairs, counts)]


_LATEST = 4096  # pageviews whose pairs are counted first
_MAX_SUMS = 16  # service and environment pairs counted by sums; beyond, by a grouping


def _matches(column: str, value: Optional[str]) -> str:
    return f"{column} IS NULL" if value is None else f"{column} = ?"


def _none_first(value: Optional[str]) -> tuple[bool, str]:
    return value is not None, value or ""


_SEPARATOR = "\x1f"
# What stands for a pageview's missing page in the joined rows (counted back), and what
# follows a pageview's time when a session id comes after it.
_NO_PAGE = "\x1e"
_SESSION_MARK = "\x1d"
_TIME_AND_SESSION = "CAST(ts_us AS TEXT) || coalesce(? || session_id, '')"
# Visitor ids are hex digests, so these halves are about even; any other id is in exactly one.
_VISITOR_HALVES = ("(visitor_id IS NULL OR visitor_id < '8')", "visitor_id >= '8'")
PageCounts = dict[Optional[str], tuple[int, int]]  # page -> (pageviews, unique visitors)
Device = tuple[Optional[str], Optional[str], Optional[str]]  # device type, browser, OS
# Of one half of the visitors: pageviews per page, unique visitors per page, unique visitors,
# sessions, pageviews per device, unique visitors per device.
_Half = tuple[
    "Counter[Optional[str]]", "Counter[Optional[str]]", int, VisitTally, "Counter[Device]", "Counter[Device]"
]


def _visitor_half(db: Reader, scope: Scope, half: str) -> Optional[_Half]:
    """Pageviews and unique visitors per page and per device, unique visitors and sessions,
    for one half of the visitors.

    Grouping by visitor (and device: a visitor id hashes the browser's agent, so a visitor
    mostly has one) sorts the pageviews once; each group's pages and times (each time with
    its session id, when there is one) come back joined and Python counts them, a third
    less work than ``COUNT(DISTINCT)`` overall, per page and per device, and cuts each
    visitor's pageviews into sessions (``VisitTally``; a visitor's groups are adjacent, in
    the order asked for). A page or session id holding the separator would be split
    wrongly: the per-group count catches that, and the answer is None
    (``_pages_by_distinct``, ``sessions_by_sql`` and ``clients.devices`` count instead), as
    it is for a time that is not an integer (only another program can store one).
    """
    views: Counter[Optional[str]] = Counter()
    people: Counter[Optional[str]] = Counter()
    device_views: Counter[Device] = Counter()
    device_people: Counter[Device] = Counter()
    tally = VisitTally()
    visitors = 0
    join = db.dialect.join_text
    rows = db.execute(
        f"SELECT visitor_id, device_type, browser, os, COUNT(*), COUNT(page), COUNT(session_id), "
        f"{join('coalesce(page, ?)')}, {join(_TIME_AND_SESSION)} "
        f"FROM {db.dialect.indexed(f'{TABLE}_pageviews')} "
        f"WHERE type = 'pageview' AND {scope.sql} AND {half} "
        f"GROUP BY {_BY_VISITOR} ORDER BY {_BY_VISITOR}",
        (_NO_PAGE, _SESSION_MARK, *scope.params),
    )
    # The visitor being gathered: its pages, times and session ids (None: none), the ids only
    # when some pageview has one.
    current: Optional[str] = _NOBODY
    seen: list[Optional[str]] = []
    times: list[int] = []
    ids: list[Optional[str]] = []
    given = 0

    def close() -> bool:
        """Count the gathered visitor's pages and sessions; False when its rows do not split back."""
        nonlocal visitors
        if current is _NOBODY:
            return True
        if given:
            _add_given(tally, current, times, seen, ids)
        elif current is not None:
            tally.add_visitor(times, seen)
        if current is not None:
            visitors += 1
            people.update(set(seen))
        return True

    for visitor, kind, browser, os, count, named, with_id, joined, times_joined in rows:
        pages: list[Optional[str]] = joined.split(_SEPARATOR)
        if len(pages) != count:
            return None
        if count > named:
            pages = [None if page == _NO_PAGE else page for page in pages]
            if pages.count(None) != count - named:
                return None
        pieces = times_joined.split(_SEPARATOR)
        if len(pieces) != count:
            return None
        marked: list[Optional[str]] = []
        if with_id:
            parts = [piece.partition(_SESSION_MARK) for piece in pieces]
            pieces = [when for when, _, _ in parts]
            marked = [session_id if mark else None for _, mark, session_id in parts]
            if len(marked) - marked.count(None) != with_id:
                return None
        try:
            at = list(map(int, pieces))
        except ValueError:  # a time another program stored as text
            return None
        views.update(pages)
        device = (kind, browser, os)
        device_views[device] += count
        if visitor is not None:
            device_people[device] += 1
        if visitor == current and current is not _NOBODY:  # the same visitor on another device
            if with_id and not given:
                ids = [None] * len(times)
            if with_id or given:
                ids += marked or [None] * count
            seen += pages
            times += at
            given += with_id
            continue
        if not close():
            return None
        current, seen, times, ids, given = visitor, pages, at, marked, with_id
    if not close():
        return None
    return views, people, visitors, tally, device_views, device_people


_BY_VISITOR = "visitor_id, device_type, browser, os"
_NOBODY: Any = object()  # no visitor gathered yet (None is the group of pageviews without one)


def _add_given(
    tally: VisitTally,
    visitor: Optional[str],
    times: list[int],
    pages: list[Optional[str]],
    ids: list[Optional[str]],
) -> None:
    """A visitor's pageviews some of which carry a session id (``ids``, None where none): those
    by session, the rest by visitor."""
    by_session: dict[Optional[str], tuple[list[int], list[Optional[str]]]] = {}
    for session_id, when, page in zip(ids, times, pages):
        if session_id is None and visitor is None:
            continue
        at, seen = by_session.setdefault(session_id, ([], []))
        at.append(when)
        seen.append(page)
    for session_id, (at, seen) in by_session.items():
        if session_id is None:
            tally.add_visitor(at, seen)
        else:
            tally.add_given(session_id, at, seen)


def _pages(
    db: Reader, scope: Scope, halves: list[Optional[_Half]], limit: int
) -> tuple[PageCounts, int, Sessions, tuple[DeviceRow, ...]]:
    counted = [half for half in halves if half is not None]
    if len(counted) < len(halves):
        pages, visitors = _pages_by_distinct(db, scope)
        sessions = sessions_by_sql(db, scope.sql, scope.params, limit)
        source = db.dialect.indexed(f"{TABLE}_pageviews")
        return pages, visitors, sessions, devices(db.execute, scope, limit, source)
    views: Counter[Optional[str]] = Counter()
    people: Counter[Optional[str]] = Counter()
    device_views: Counter[Device] = Counter()
    device_people: Counter[Device] = Counter()
    tally = VisitTally()
    for half_views, half_people, _, half_tally, half_device_views, half_device_people in counted:
        views.update(half_views)
        people.update(half_people)
        tally.merge(half_tally)
        device_views.update(half_device_views)
        device_people.update(half_device_people)
    pages = {page: (views[page], people[page]) for page in views if views[page]}
    found = [(*device, n, device_people[device]) for device, n in device_views.items()]
    return pages, sum(half[2] for half in counted), tally.result(limit), device_rows(found, limit)


def _pages_by_distinct(db: Reader, scope: Scope) -> tuple[PageCounts, int]:
    window = f"type = 'pageview' AND {scope.sql}"
    source = db.dialect.indexed(f"{TABLE}_pageviews")
    pages = db.execute(
        f"SELECT page, COUNT(*), COUNT(DISTINCT visitor_id) FROM {source} WHERE {window} GROUP BY page",
        scope.params,
    ).fetchall()
    (visitors,) = db.execute(
        f"SELECT COUNT(DISTINCT visitor_id) FROM {source} WHERE {window}", scope.params
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
    chosen = Scope(0, report.service, report.environment).describe()
    parts = [
        f"otel-user-tracking report since {report.since}"
        + (f", {terminal_text(chosen)}" if chosen else "")
        + "\n"
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
        *_sessions_tables(report.sessions),
    ]
    if len(report.services) > 1 or chosen:
        parts.append(
            _table(
                "Services",
                ("service", "environment", "pageviews"),
                [
                    (row.service or "(none)", row.environment or "(none)", row.pageviews)
                    for row in report.services
                ],
            )
        )
    if report.error_types:
        example = JAEGER_TRACE_URL.format(trace_id=terminal_text(report.error_types[0].trace_id))
        parts.append(f"Open an error's trace in Jaeger: {example}\n")
    return "\n".join(parts)


def _sessions_tables(visits: Sessions) -> list[str]:
    """The sessions line and the entry and exit pages (docs/store.md says how sessions are cut)."""
    if not visits.sessions:
        return ["Sessions\n  (none)\n"]
    summary = (
        f"Sessions\n  sessions {visits.sessions}   bounce rate {visits.bounce_rate or 0:.1%}   "
        f"views per session {visits.views_per_session or 0:.2f}   "
        f"visit duration median {visits.median_duration_s} s, mean {visits.mean_duration_s or 0:.1f} s\n"
    )
    return [
        summary,
        _table("Entry pages", ("page", "sessions"), [(row.page, row.sessions) for row in visits.entry_pages]),
        _table("Exit pages", ("page", "sessions"), [(row.page, row.sessions) for row in visits.exit_pages]),
    ]


def render_json(report: Report) -> str:
    """The report as one JSON object (for scripts and dashboards), safe to print to a terminal.

    ``json`` escapes C0 controls; C1 and bidirectional controls are escaped here too
    (``\\u009b``, ``\\u202e``), which decode to the same strings.
    """
    return _JSON_UNESCAPED.sub(_json_escaped, json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
