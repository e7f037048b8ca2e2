"""The report on a big store: every query it issues is served by an index, and its numbers stay exact."""

from __future__ import annotations

import dataclasses
import random
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Optional

import pytest

from otel_user_tracking.analytics.events import AnalyticsEvent
from otel_user_tracking.sinks import SQLiteSink
from otel_user_tracking.store.clients import DeviceRow, FilteredRow
from otel_user_tracking.store.report import CountRow, ErrorRow, Report, RouteRow, ServiceRow, build_report
from otel_user_tracking.store.sessions import PageCount, Sessions
from otel_user_tracking.store.sqlite.schema import _MIGRATIONS, INSERT, SCHEMA_VERSION, connect

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
PAGES = ["/", "/a", "/b", "/c/{id}", "/d", "/e"]
VALUES = [None, "x", "y", "z", "w"]
ERRORS = [None, "KeyError", "ValueError", "RuntimeError"]
DEVICE_TYPES = [None, "desktop", "mobile", "tablet"]
BROWSERS = [None, "Chrome", "Firefox", "Mobile Safari"]
SYSTEMS = [None, "Windows", "iOS", "Android"]


def generate(count: int, seed: int) -> list[AnalyticsEvent]:
    """Events over three days with small value pools, so counts tie and the limit cuts through ties."""
    rng = random.Random(seed)
    made = []
    for index in range(count):
        kind = rng.choices(["pageview", "error", "custom", "filtered"], weights=[85, 7, 8, 4])[0]
        made.append(
            AnalyticsEvent(
                type=kind,  # type: ignore[arg-type]
                trace_id=f"{index:032x}",
                span_id=f"{index:016x}",
                # Distinct instants: the latest error of a type is one row.
                timestamp=NOW - timedelta(seconds=rng.randrange(3 * 86_400), microseconds=index),
                route=rng.choice(PAGES) if rng.random() > 0.02 else None,
                visitor_id=f"v{rng.randrange(300)}" if rng.random() > 0.1 else None,
                referrer=rng.choice(VALUES),
                locale=rng.choice(VALUES),
                utm_source=rng.choice(VALUES),
                name=rng.choice(["SIGNUP", "BUY", "Item Purchased"])
                if kind == "custom"
                else rng.choice(["bot", "bot", "monitor", "script"])
                if kind == "filtered"
                else None,
                device_type=rng.choice(DEVICE_TYPES),
                browser=rng.choice(BROWSERS),
                os=rng.choice(SYSTEMS),
                error_type=rng.choice(ERRORS) if kind == "error" else None,
                error_message=f"message {index}" if kind == "error" and rng.random() > 0.1 else None,
                # Some pageviews in sessions the app named, a few of them spanning visitors.
                session_id=f"s{rng.randrange(40)}" if rng.random() < 0.1 else None,
                service_name=rng.choice([None, "shop", "shop", "api"]),
                deployment_environment=rng.choice([None, "production"]),
            )
        )
    return made


def write(path: Path, events: list[AnalyticsEvent]) -> None:
    sink = SQLiteSink(path, retention_days=0)
    for start in range(0, len(events), sink.max_batch_size):
        sink.send(events[start : start + sink.max_batch_size])
    sink.close()


def _top(counts: Counter[str], limit: int) -> tuple[CountRow, ...]:
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]
    return tuple(CountRow(value, count) for value, count in ranked)


def _iso(event: AnalyticsEvent) -> str:
    return event.timestamp.isoformat(timespec="seconds")


def reference_sessions(pageviews: list[AnalyticsEvent], limit: int) -> Sessions:
    """Sessions as docs/ say: by the app's session id, else a visitor's pageviews cut at gaps over 30 min."""
    by_key: dict[str, list[AnalyticsEvent]] = defaultdict(list)
    for event in sorted(pageviews, key=lambda event: (event.ts_us, event.page is not None, event.page or "")):
        if event.session_id is not None:
            by_key[f"s{event.session_id}"].append(event)
        elif event.visitor_id is not None:
            by_key[f"v{event.visitor_id}"].append(event)
    visits: list[list[AnalyticsEvent]] = []
    for key, views in by_key.items():
        visit = [views[0]]
        for before, event in zip(views, views[1:]):
            if key.startswith("v") and event.ts_us - before.ts_us > 30 * 60 * 1_000_000:
                visits.append(visit)
                visit = []
            visit.append(event)
        visits.append(visit)
    if not visits:
        return Sessions(0, 0, None, 0, None, None, None, (), ())
    seconds = sorted((visit[-1].ts_us - visit[0].ts_us) // 1_000_000 for visit in visits)

    def top(pages: Counter[Optional[str]]) -> tuple[PageCount, ...]:
        ranked = sorted(pages.items(), key=lambda item: (-item[1], item[0] is None, item[0] or ""))
        return tuple(PageCount(str(page), n) for page, n in ranked[:limit])

    bounces = sum(1 for visit in visits if len(visit) == 1)
    views = sum(len(visit) for visit in visits)
    return Sessions(
        sessions=len(visits),
        bounces=bounces,
        bounce_rate=bounces / len(visits),
        pageviews=views,
        views_per_session=views / len(visits),
        mean_duration_s=sum(visit[-1].ts_us - visit[0].ts_us for visit in visits) / len(visits) / 1e6,
        median_duration_s=seconds[(len(seconds) - 1) // 2],
        entry_pages=top(Counter(visit[0].page for visit in visits)),
        exit_pages=top(Counter(visit[-1].page for visit in visits)),
    )


def reference(events: Iterable[AnalyticsEvent], since: datetime, limit: int) -> Report:
    """What the report must say, counted in plain Python from the events themselves."""
    window = [event for event in events if event.timestamp >= since]
    pageviews = [event for event in window if event.type == "pageview"]
    by_page: dict[Optional[str], list[AnalyticsEvent]] = defaultdict(list)
    for event in pageviews:
        by_page[event.page].append(event)
    ranked_pages = sorted(by_page, key=lambda page: (-len(by_page[page]), page is not None, page or ""))
    routes = [
        RouteRow(
            str(page),
            len(by_page[page]),
            len({event.visitor_id for event in by_page[page] if event.visitor_id}),
        )
        for page in ranked_pages[:limit]
    ]  # SQL sorts a NULL page (or error type) first among equals
    errors: dict[Optional[str], list[AnalyticsEvent]] = defaultdict(list)
    for event in window:
        if event.type == "error":
            errors[event.error_type].append(event)
    error_rows = []
    for kind, items in sorted(
        errors.items(), key=lambda item: (-len(item[1]), item[0] is not None, item[0] or "")
    ):
        latest = max(items, key=lambda event: event.ts_us)
        error_rows.append(
            ErrorRow(kind or "?", len(items), _iso(latest), latest.error_message or "", latest.trace_id)
        )

    def counts(field: str, type_: str = "pageview") -> tuple[CountRow, ...]:
        values = (getattr(event, field) for event in window if event.type == type_)
        return _top(Counter(value for value in values if value is not None), limit)

    return Report(
        since=since.isoformat(timespec="seconds"),
        pageviews=len(pageviews),
        visitors=len({event.visitor_id for event in pageviews if event.visitor_id}),
        errors=sum(len(items) for items in errors.values()),
        custom_events=sum(1 for event in window if event.type == "custom"),
        routes=tuple(routes),
        referrers=counts("referrer"),
        locales=counts("locale"),
        utm_sources=counts("utm_source"),
        error_types=tuple(error_rows[:limit]),
        custom=counts("name", "custom"),
        filtered=tuple(
            FilteredRow(client, sum(1 for e in window if e.type == "filtered" and e.name == client))
            for client in ("bot", "monitor", "script")
        ),
        devices=_devices(pageviews, limit),
        sessions=reference_sessions(pageviews, limit),
        services=tuple(
            ServiceRow(service, environment, n)
            for (service, environment), n in sorted(
                Counter((event.service_name, event.deployment_environment) for event in pageviews).items(),
                key=lambda item: (-item[1], item[0][0] is not None, item[0][0] or "", item[0][1] or ""),
            )
        ),
    )


def _devices(pageviews: list[AnalyticsEvent], limit: int) -> tuple[DeviceRow, ...]:
    groups: dict[tuple[str, str, str], list[AnalyticsEvent]] = defaultdict(list)
    for event in pageviews:
        groups[tuple(value or "unknown" for value in (event.device_type, event.browser, event.os))].append(
            event
        )  # type: ignore[index]
    rows = [
        DeviceRow(*key, len(items), len({event.visitor_id for event in items if event.visitor_id}))
        for key, items in groups.items()
    ]
    rows.sort(key=lambda row: (-row.pageviews, row.device_type, row.browser, row.os))
    return tuple(rows[:limit])


@pytest.fixture(scope="module")
def events() -> list[AnalyticsEvent]:
    return generate(6000, seed=11)


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory, events: list[AnalyticsEvent]) -> Path:
    path = tmp_path_factory.mktemp("plans") / "store.db"
    write(path, events)
    return path


WINDOWS = [timedelta(minutes=30), timedelta(hours=24), timedelta(days=2), timedelta(days=30)]


@pytest.mark.parametrize("limit", [3, 10, 1000])
@pytest.mark.parametrize("window", WINDOWS, ids=str)
def test_report_equals_a_plain_python_count(
    database: Path, events: list[AnalyticsEvent], window: timedelta, limit: int
) -> None:
    """Every number, row and order of the report equals a plain count in Python, ties and limit included."""
    since = NOW - window
    expected = reference(events, since, limit)
    assert build_report(database, since, limit=limit) == expected
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)  # one connection, no threads
    try:
        assert build_report(connection, since, limit=limit) == expected
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("service", "environment"), [("shop", None), ("api", "production"), (None, "production"), ("nope", None)]
)
def test_a_filtered_report_equals_the_count_of_its_events(
    database: Path, events: list[AnalyticsEvent], service: Optional[str], environment: Optional[str]
) -> None:
    """``--service``/``--environment``: every number is the plain count of that service's events alone."""
    since = NOW - timedelta(days=2)
    kept = [
        event
        for event in events
        if (service is None or event.service_name == service)
        and (environment is None or event.deployment_environment == environment)
    ]
    expected = dataclasses.replace(reference(kept, since, 10), service=service, environment=environment)
    assert build_report(database, since, service=service, environment=environment) == expected


ODD_VALUES = [
    ("page", "/a\x1f/b"),
    ("page", "/a,b"),
    ("page", ""),
    ("session_id", "s\x1fx"),
    ("session_id", "s\x1dx"),
    ("session_id", ""),
]


@pytest.mark.parametrize(
    ("field", "odd"),
    ODD_VALUES,
    ids=["separator", "comma", "empty", "session-separator", "session-mark", "session-empty"],
)
def test_a_page_or_session_id_holding_the_separator_is_counted_exactly(
    tmp_path: Path, field: str, odd: str
) -> None:
    """A page or session id containing the separator the per-visitor pass joins them with (or the
    mark between a time and its session id, or nothing) is still counted exactly."""
    events = [
        event._replace(**{field: odd}) if index % 7 == 0 and event.type == "pageview" else event
        for index, event in enumerate(generate(1500, seed=5))
    ]
    path = tmp_path / "store.db"
    write(path, events)
    since = NOW - timedelta(days=30)
    assert build_report(path, since, limit=1000) == reference(events, since, 1000)


def _statements(path: Path, since: datetime) -> list[str]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    issued: list[str] = []
    connection.set_trace_callback(issued.append)
    try:
        build_report(connection, since)
        build_report(connection, since, service="shop", environment="production")  # the filters too
    finally:
        connection.close()
    return [sql for sql in issued if sql.lstrip().upper().startswith(("SELECT", "WITH"))]


def write_analyzed_then_upgraded(path: Path, events: list[AnalyticsEvent]) -> None:
    """A store written and analyzed at the previous schema version, then opened (migrated) by this one."""
    connection = sqlite3.connect(path, isolation_level=None)
    for statements in _MIGRATIONS[: SCHEMA_VERSION - 1]:
        for statement in statements:
            connection.execute(statement)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
    connection.executemany(INSERT, events)
    connection.execute("ANALYZE")  # statistics that know nothing of the indexes added since
    connection.close()
    connect(path).close()


@pytest.mark.parametrize("store", ["fresh", "analyzed", "analyzed then upgraded"])
def test_every_report_query_is_served_by_an_index(tmp_path: Path, store: str) -> None:
    """Every statement the report issues reads events through an index (covering scans too), not the table."""
    path = tmp_path / "store.db"
    if store == "analyzed then upgraded":
        write_analyzed_then_upgraded(path, generate(2000, seed=3))
    else:
        write(path, generate(2000, seed=3))
    if store == "analyzed":  # sqlite_stat1 may change the planner's mind
        connection = sqlite3.connect(path)
        connection.execute("ANALYZE")
        connection.close()
    statements = _statements(path, NOW - timedelta(days=30))
    assert len(statements) >= 5
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
        for sql in statements:
            steps = [row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}")]
            on_events = [step for step in steps if step.split()[1:2] == ["events"]]
            assert on_events, (sql, steps)
            assert all("INDEX" in step for step in on_events), (sql, steps)
            if "'pageview'" in sql:  # millions of rows: the index alone must answer, no table lookups
                assert all("COVERING INDEX" in step for step in on_events), (sql, steps)
