"""The dashboard's numbers: the report's sections plus time series, request metrics and meta keys.

Everything is read inside one read transaction, so the charts, the totals and the tables
agree even while the app writes. The report's own sections come from ``build_report``, so
they are the numbers of ``report --format json`` for the same window; the rest is queried
here, each query served by an index (``events_pageviews``, ``events_requests``,
``events_type_name_ts``), never a scan of the table.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional, Union

from ...analytics.events import to_us
from ...request.bots import is_bot
from ..reader import Reader, as_reader
from ..report import CountRow, Report, ServiceRow, build_report, latest_errors, services_of, top_values
from ..scope import Scope
from ..sqlite.schema import TABLE

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
# Hourly points up to this span, daily beyond: at most 72 points either way for common windows.
HOURLY_UNTIL_US = 3 * DAY_US
# Beyond 400 days a point spans several days, so a window of years stays a few hundred queries.
MAX_POINTS = 400


@dataclass(frozen=True)
class Window:
    """The time window shown, ``[since_us, now_us)``, cut at whole UTC hours (or days) into points.

    The first point starts at ``since_us`` and runs to the next whole hour or day, so the
    points add up to the report's totals for the same ``since``. The previous period is the
    same span just before ``since_us``, cut at the same offsets, so point ``k`` of both series
    compares like with like.
    """

    since_us: int
    now_us: int
    bucket_us: int

    @classmethod
    def of(cls, since: datetime, now: datetime) -> Window:
        """Hourly points for windows under three days, daily ones beyond (whole days per point
        past ``MAX_POINTS`` days)."""
        since_us, now_us = to_us(since), to_us(now)
        span = max(now_us - since_us, 1)
        if span < HOURLY_UNTIL_US:
            return cls(since_us, now_us, HOUR_US)
        return cls(since_us, now_us, DAY_US * max(1, -(-span // (DAY_US * MAX_POINTS))))

    @property
    def span_us(self) -> int:
        return max(self.now_us - self.since_us, 1)

    @property
    def hourly(self) -> bool:
        return self.bucket_us == HOUR_US

    @property
    def point_name(self) -> str:
        """What one point covers: "hour", "day" or "N days"."""
        if self.hourly:
            return "hour"
        days = self.bucket_us // DAY_US
        return "day" if days == 1 else f"{days} days"

    def starts(self) -> list[int]:
        """Each point's start in the current period: ``since_us``, then every whole hour or day."""
        first = (self.since_us // self.bucket_us + 1) * self.bucket_us
        return [self.since_us, *range(first, max(self.now_us, first), self.bucket_us)]

    def bounds(self, previous: bool = False) -> list[tuple[int, Optional[int]]]:
        """Each point's ``[start, end)``. The current period's last point is open-ended, like
        the report's window (``ts_us >= since``); the previous period's ends at ``since_us``."""
        shift = self.span_us if previous else 0
        starts = [start - shift for start in self.starts()]
        ends: list[Optional[int]] = [*starts[1:], self.since_us if previous else None]
        return list(zip(starts, ends))


@dataclass(frozen=True)
class Series:
    """Pageviews and unique visitors per bucket, for the window and the period before it."""

    starts_us: tuple[int, ...]
    pageviews: tuple[int, ...]
    visitors: tuple[int, ...]
    previous_pageviews: tuple[int, ...]
    previous_visitors: tuple[int, ...]
    # The previous period's unique visitors overall (a visitor can span several buckets).
    previous_unique_visitors: int


@dataclass(frozen=True)
class RouteStats:
    """Requests of one page (route template) by status class, and its duration percentiles."""

    page: str
    requests: int
    client_errors: int
    server_errors: int
    p50_ms: Optional[float]
    p95_ms: Optional[float]


@dataclass(frozen=True)
class CustomRow:
    """A custom event name, its count and how many of those events carry each meta key."""

    name: str
    count: int
    meta_keys: tuple[CountRow, ...]


@dataclass(frozen=True)
class ErrorPerson:
    """Who saw an error type last, as the store holds them: for a link to their journey."""

    error_type: str
    user_id: Optional[str]
    visitor_id: Optional[str]
    session_id: Optional[str]


@dataclass(frozen=True)
class Dashboard:
    """Everything the page shows for one window (of one service and environment when asked)."""

    report: Report
    window: Window
    series: Series
    statuses: tuple[CountRow, ...]
    routes: tuple[RouteStats, ...]
    campaigns: tuple[CountRow, ...]
    terms: tuple[CountRow, ...]
    contents: tuple[CountRow, ...]
    # Every service and environment of the window, whatever the filter (for the selector).
    services: tuple[ServiceRow, ...]
    custom: tuple[CustomRow, ...]
    error_people: tuple[ErrorPerson, ...]
    bot_pageviews: int
    generated_at: str


def build_dashboard(
    source: Union[Reader, sqlite3.Connection],
    since: datetime,
    now: Optional[datetime] = None,
    limit: int = 10,
    *,
    service: Optional[str] = None,
    environment: Optional[str] = None,
) -> Dashboard:
    """Read the whole dashboard for events at or after ``since`` in one read transaction.

    Args:
        source: A reader (``reader.open_reader``) or a SQLite connection; left open.
        since: The window's start, as for ``build_report``.
        now: The window's end for the charts (defaults to the current time).
        limit: Rows per table, as ``report --limit``.
        service: Only this ``service.name``'s events, as ``report --service``.
        environment: Only this deployment environment's events, as ``report --environment``.
    """
    current = now or datetime.now(timezone.utc)
    window = Window.of(since, current)
    db = as_reader(source)
    scope = Scope(window.since_us, service, environment)
    with db.read_transaction():
        report = build_report(db, since, limit, service=service, environment=environment)
        statuses, routes = _requests(db, scope, limit)
        return Dashboard(
            report=report,
            window=window,
            series=_series(db, window, scope),
            statuses=statuses,
            routes=routes,
            campaigns=top_values(db, "utm_campaign", scope, limit),
            terms=top_values(db, "utm_term", scope, limit),
            services=(
                report.services
                if service is None and environment is None
                else services_of(db, Scope(window.since_us))
            ),
            contents=top_values(db, "utm_content", scope, limit),
            custom=tuple(
                CustomRow(row.value, row.count, _meta_keys(db, row.value, scope)) for row in report.custom
            ),
            error_people=_error_people(db, scope),
            bot_pageviews=_bot_pageviews(db, scope),
            generated_at=current.astimezone(timezone.utc).isoformat(timespec="seconds"),
        )


def _bucket_counts(
    db: Reader, bounds: list[tuple[int, Optional[int]]], scope: Scope
) -> list[tuple[int, int]]:
    # One small range query per bucket beats GROUP BY over the window: no temporary B-tree.
    counts = []
    for low, high in bounds:
        if high is None:
            sql = (
                f"SELECT COUNT(*), COUNT(DISTINCT visitor_id) FROM {TABLE} "
                f"WHERE type = 'pageview' AND ts_us >= ?{scope.filters}"
            )
            row = db.execute(sql, (low, *scope.filter_params)).fetchone()
        else:
            sql = (
                f"SELECT COUNT(*), COUNT(DISTINCT visitor_id) FROM {TABLE} "
                f"WHERE type = 'pageview' AND ts_us >= ? AND ts_us < ?{scope.filters}"
            )
            row = db.execute(sql, (low, high, *scope.filter_params)).fetchone()
        counts.append((int(row[0]), int(row[1])))
    return counts


def _series(db: Reader, window: Window, scope: Scope) -> Series:
    current = _bucket_counts(db, window.bounds(), scope)
    previous = _bucket_counts(db, window.bounds(previous=True), scope)
    return Series(
        starts_us=tuple(window.starts()),
        pageviews=tuple(n for n, _ in current),
        visitors=tuple(v for _, v in current),
        previous_pageviews=tuple(n for n, _ in previous),
        previous_visitors=tuple(v for _, v in previous),
        previous_unique_visitors=_bucket_counts(
            db, [(window.since_us - window.span_us, window.since_us)], scope
        )[0][1],
    )


def _requests(db: Reader, scope: Scope, limit: int) -> tuple[tuple[CountRow, ...], tuple[RouteStats, ...]]:
    """The status-code mix and the per-route table, from one pass over the covering index.

    Durations are grouped to 0.1 ms, so the result has a row per (page, status, duration) value
    actually seen instead of one per request; percentiles are nearest-rank over that histogram.
    """
    rows = db.execute(
        f"SELECT page, status_code, {db.dialect.round_int('duration_ms * 10')} AS tenths, COUNT(*) "
        f"FROM {TABLE} WHERE type = 'pageview' AND {scope.sql} GROUP BY page, status_code, tenths",
        scope.params,
    ).fetchall()
    statuses: dict[Optional[str], int] = {}
    pages: dict[str, list[int]] = {}
    durations: dict[str, dict[int, int]] = {}
    for page, status, tenths, count in rows:
        key = str(page)
        code = _status(status)
        label = None if status is None else str(code if code is not None else status)
        statuses[label] = statuses.get(label, 0) + count
        totals = pages.setdefault(key, [0, 0, 0])
        totals[0] += count
        if code is not None:
            totals[1] += count if 400 <= code < 500 else 0
            totals[2] += count if code >= 500 else 0
        if isinstance(tenths, int):
            histogram = durations.setdefault(key, {})
            histogram[tenths] = histogram.get(tenths, 0) + count
    top = sorted(pages.items(), key=lambda item: (-item[1][0], item[0]))[:limit]
    routes = tuple(
        RouteStats(
            page,
            requests,
            client,
            server,
            _percentile(durations.get(page, {}), 50),
            _percentile(durations.get(page, {}), 95),
        )
        for page, (requests, client, server) in top
    )
    mix = tuple(
        CountRow("none" if label is None else label, count)
        for label, count in sorted(statuses.items(), key=_status_order)
    )
    return mix, routes


def _status(value: object) -> Optional[int]:
    """A stored status code as a number; None for one that is not (the store types nothing)."""
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _status_order(item: tuple[Optional[str], int]) -> tuple[int, int, str]:
    """Numeric codes in order, then odd stored values, then "none"."""
    label = item[0]
    if label is None:
        return (2, 0, "")
    code = _status(label)
    return (0, code, "") if code is not None else (1, 0, label)


def _percentile(histogram: dict[int, int], percent: int) -> Optional[float]:
    """Nearest rank: the smallest value with at least ``ceil(n * percent / 100)`` values at or below."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = -(-total * percent // 100)
    seen = 0
    for tenths in sorted(histogram):
        seen += histogram[tenths]
        if seen >= rank:
            return tenths / 10
    return None  # unreachable: seen reaches total >= rank


def _meta_keys(db: Reader, name: str, scope: Scope) -> tuple[CountRow, ...]:
    keys = db.dialect.keys_of(f"{TABLE}.meta", "meta_key")
    rows = db.execute(
        f"SELECT meta_key.key, COUNT(*) AS n FROM {TABLE}, {keys} "
        f"WHERE {TABLE}.type = 'custom' AND {TABLE}.name = ? AND {TABLE}.ts_us >= ? "
        f"{scope.filters_on(TABLE)} "
        f"AND {db.dialect.valid_json(f'{TABLE}.meta')} GROUP BY meta_key.key ORDER BY n DESC, meta_key.key",
        (name, *scope.params),
    ).fetchall()
    return tuple(CountRow(str(key), int(n)) for key, n in rows)


def _error_people(db: Reader, scope: Scope) -> tuple[ErrorPerson, ...]:
    rows = latest_errors(db, "user_id, visitor_id, session_id", scope)
    return tuple(
        ErrorPerson(str(kind), *(None if value is None else str(value) for value in (user, visitor, session)))
        for kind, _, _, user, visitor, session in rows
    )


def _bot_pageviews(db: Reader, scope: Scope) -> int:
    """Stored pageviews whose user agent is a known bot's: none unless ``ignore_bots`` was off."""
    rows = db.execute(
        f"SELECT user_agent, COUNT(*) FROM {TABLE} WHERE type = 'pageview' AND {scope.sql} "
        "AND user_agent IS NOT NULL GROUP BY user_agent",
        scope.params,
    ).fetchall()
    return sum(int(n) for agent, n in rows if is_bot(str(agent)))
