"""The SQLite store and the report: durable, idempotent, versioned, and counting right."""

from __future__ import annotations

import contextlib
import json
import random
import sqlite3
import threading
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from otel_user_tracking.__main__ import main
from otel_user_tracking.analytics.events import AnalyticsEvent
from otel_user_tracking.sinks import (
    ConsoleSink,
    InMemorySink,
    JSONLinesSink,
    PermanentSinkError,
    RetryableSinkError,
    SQLiteSink,
    sink_from_url,
)
from otel_user_tracking.store.report import build_report, parse_since, render_table
from otel_user_tracking.store.sqlite.schema import _MIGRATIONS, COLUMNS, INSERT, SCHEMA_VERSION, connect

from ._cli import report_json

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
PAGES = ["/", "/products/{id}", "/cart", "/checkout", "/users/{id}", "/search"]
REFERRERS = [None, "https://google.com/", "https://news.ycombinator.com/", "https://t.co/x"]
LOCALES = [None, "en-US", "de-DE", "fr-FR", "ja"]
SOURCES = [None, None, "newsletter", "twitter", "ads"]
ERRORS = [("RuntimeError", "kaboom"), ("KeyError", "'sku'"), ("TimeoutError", "db")]
CUSTOM = ["CHECKOUT_COMPLETED", "Item Purchased", "SIGNUP"]


def _event(type_: str, **fields: object) -> AnalyticsEvent:
    return AnalyticsEvent(type=type_, trace_id="ab" * 16, span_id="cd" * 8, **fields)  # type: ignore[arg-type]


def generate(count: int, seed: int = 7) -> list[AnalyticsEvent]:
    rng = random.Random(seed)
    events = []
    for index in range(count):
        when = NOW - timedelta(seconds=rng.randrange(0, 3 * 86400))  # three days back
        kind = rng.choices(["pageview", "error", "custom"], weights=[90, 4, 6])[0]
        common = {
            "timestamp": when,
            "trace_id": f"{index:032x}",
            "span_id": f"{index:016x}",
            "route": rng.choice(PAGES),
            "visitor_id": f"v{rng.randrange(2000)}" if rng.random() > 0.05 else None,
        }
        if kind == "pageview":
            events.append(
                AnalyticsEvent(
                    type="pageview",
                    referrer=rng.choice(REFERRERS),
                    locale=rng.choice(LOCALES),
                    utm_source=rng.choice(SOURCES),
                    **common,  # type: ignore[arg-type]
                )
            )
        elif kind == "error":
            error_type, message = rng.choice(ERRORS)
            events.append(
                AnalyticsEvent(
                    type="error",
                    error_type=error_type,
                    error_message=f"{message} #{index}",
                    **common,  # type: ignore[arg-type]
                )
            )
        else:
            events.append(AnalyticsEvent(type="custom", name=rng.choice(CUSTOM), **common))  # type: ignore[arg-type]
    return events


def store(path: Path, events: list[AnalyticsEvent]) -> None:
    sink = SQLiteSink(path)
    for start in range(0, len(events), sink.max_batch_size):
        sink.send(events[start : start + sink.max_batch_size])
    sink.close()


def test_report_numbers_match_an_independent_count(tmp_path: Path) -> None:
    """Every report figure (totals, visitors, pages, referrers, errors) equals a count made in Python."""
    # Enough for several sink batches, events on both sides of the window, repeat visitors and
    # every value of every dimension; the report's speed at size is benchmarks/bench_store.py's.
    events = generate(3_000)
    database = tmp_path / "a.db"
    store(database, events)
    since = NOW - timedelta(hours=24)
    report = build_report(database, since, limit=100)

    window = [event for event in events if event.timestamp >= since]
    pageviews = [event for event in window if event.type == "pageview"]
    errors = [event for event in window if event.type == "error"]
    custom = [event for event in window if event.type == "custom"]
    assert 0 < len(window) < len(events)
    visits = [event.visitor_id for event in pageviews if event.visitor_id]
    assert len(set(visits)) < len(visits)  # some visitors come back: distinct counting is tested
    assert (report.pageviews, report.errors, report.custom_events) == (
        len(pageviews),
        len(errors),
        len(custom),
    )
    assert report.visitors == len({event.visitor_id for event in pageviews if event.visitor_id})

    by_page: dict[str, list[AnalyticsEvent]] = defaultdict(list)
    for event in pageviews:
        by_page[str(event.page)].append(event)
    assert {row.page: (row.pageviews, row.visitors) for row in report.routes} == {
        page: (len(items), len({event.visitor_id for event in items if event.visitor_id}))
        for page, items in by_page.items()
    }
    assert len(report.routes) == len(PAGES)
    for rows, field, values in (
        (report.referrers, "referrer", REFERRERS),
        (report.locales, "locale", LOCALES),
        (report.utm_sources, "utm_source", SOURCES),
    ):
        expected = Counter(getattr(event, field) for event in pageviews if getattr(event, field))
        assert {row.value: row.count for row in rows} == dict(expected)
        assert set(expected) == set(values) - {None}
    custom_counts = Counter(event.name for event in custom)
    assert {row.value: row.count for row in report.custom} == dict(custom_counts)
    assert set(custom_counts) == set(CUSTOM)
    for row in report.error_types:
        of_type = [event for event in errors if event.error_type == row.error_type]
        latest = max(of_type, key=lambda event: event.timestamp)
        assert row.count == len(of_type)
        assert (row.last_message, row.trace_id) == (latest.error_message, latest.trace_id)
    assert len(report.error_types) == len(ERRORS)
    table = render_table(report)
    assert "/products/{id}" in table and "http://localhost:16686/trace/" in table


def test_report_queries_use_the_indexes(tmp_path: Path) -> None:
    """The per-page pageview query is answered from the covering index, not a table scan."""
    database = tmp_path / "a.db"
    store(database, generate(200))
    with contextlib.closing(sqlite3.connect(database)) as db:
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT page, COUNT(*), COUNT(DISTINCT visitor_id) FROM events "
            "WHERE type = 'pageview' AND ts_us >= 0 GROUP BY page"
        ).fetchall()
    assert "USING COVERING INDEX events_pageviews" in repr(plan)


def test_the_store_is_wal_versioned_and_ignores_a_resent_batch(tmp_path: Path) -> None:
    """The store runs in WAL mode at the current schema version, and a resent batch adds no row twice."""
    database = tmp_path / "a.db"
    batch = generate(50)
    sink = SQLiteSink(database)
    sink.send(batch)
    sink.send(batch)  # a retry after an ambiguous failure
    sink.close()
    with contextlib.closing(sqlite3.connect(database)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 50


def test_a_store_without_the_newer_fields_gains_their_columns(tmp_path: Path) -> None:
    """A store written before utm_term/utm_content/service_name/deployment_environment existed gets
    their columns when opened (before the migration that indexes them), keeps its rows, has a
    fresh store's indexes, and stores the new fields."""
    database = tmp_path / "old.db"
    newer = ("utm_term", "utm_content", "service_name", "deployment_environment")
    fresh = tmp_path / "fresh.db"
    connect(fresh).close()
    with contextlib.closing(sqlite3.connect(fresh)) as db:
        indexes = {
            row[0]: row[1] for row in db.execute("SELECT name, sql FROM sqlite_master WHERE type='index'")
        }
    with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as db:
        for statements in _MIGRATIONS[: SCHEMA_VERSION - 1]:  # the previous version's schema
            for statement in statements:
                db.execute(statement)
        for column in newer:
            db.execute(f"ALTER TABLE events DROP COLUMN {column}")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
        kept = [column for column in COLUMNS if column not in newer]
        db.execute(
            f"INSERT INTO events ({', '.join(kept)}) VALUES ({', '.join('?' * len(kept))})",
            [dict(zip(COLUMNS, _event("pageview", route="/old")))[column] for column in kept],
        )
    store(database, [_event("pageview", route="/new", utm_term="shoes", service_name="shop")])
    with contextlib.closing(sqlite3.connect(database)) as db:
        rows = db.execute("SELECT page, utm_term, service_name FROM events ORDER BY page").fetchall()
        assert rows == [("/new", "shoes", "shop"), ("/old", None, None)]
        assert {
            row[0]: row[1] for row in db.execute("SELECT name, sql FROM sqlite_master WHERE type='index'")
        } == indexes


def test_a_batch_is_one_transaction(tmp_path: Path) -> None:
    """A row that fails to insert rolls back its whole batch and raises PermanentSinkError."""
    database = tmp_path / "a.db"
    bad = _event("pageview")
    bad = bad._replace(status_code=object())  # SQLite cannot bind it: the third row fails
    sink = SQLiteSink(database)
    with pytest.raises(PermanentSinkError):
        sink.send([_event("pageview"), _event("pageview"), bad])
    sink.close()
    with contextlib.closing(sqlite3.connect(database)) as db:
        assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 0


def test_a_locked_database_is_retried(tmp_path: Path) -> None:
    """A database locked past busy_timeout raises RetryableSinkError; once unlocked the send succeeds."""
    database = tmp_path / "a.db"
    store(database, [])
    blocker = sqlite3.connect(database, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    sink = SQLiteSink(database, busy_timeout=0.05)
    try:
        with pytest.raises(RetryableSinkError, match="locked"):
            sink.send([_event("pageview")])
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    sink.send([_event("pageview")])
    sink.close()


def test_a_database_from_a_newer_version_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store with a newer schema version is refused by the sink and by the report, which says to upgrade."""
    database = tmp_path / "a.db"
    with contextlib.closing(sqlite3.connect(database)) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(PermanentSinkError, match="newer"):
        SQLiteSink(database).send([_event("pageview")])
    assert main(["report", str(database)]) == 2
    assert "upgrade" in capsys.readouterr().err


def test_report_cli_as_module_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """python -m otel_user_tracking report prints JSON; a missing store or bad --since exits with a hint."""
    database = tmp_path / "a.db"
    store(database, [_event("pageview", route="/x", visitor_id="v", timestamp=datetime.now(timezone.utc))])
    assert report_json(database)["routes"] == [{"page": "/x", "pageviews": 1, "visitors": 1}]
    assert main(["report", str(tmp_path / "missing.db")]) == 2
    assert "no analytics database" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["report", str(database), "--since", "yesterday"])
    assert "24h, 7d" in capsys.readouterr().err


def test_since_accepts_durations_and_dates() -> None:
    """--since takes minute and week durations relative to now, and a plain date as UTC midnight."""
    assert parse_since("90m", now=NOW) == NOW - timedelta(minutes=90)
    assert parse_since("2w", now=NOW) == NOW - timedelta(weeks=2)
    assert parse_since("2026-11-01") == datetime(2026, 11, 1, tzinfo=timezone.utc)


def test_local_sinks_from_urls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """jsonl, console, memory and relative sqlite URLs make working sinks; an unknown scheme lists them."""
    jsonl = sink_from_url(f"jsonl:///{tmp_path}/e.jsonl")
    assert isinstance(jsonl, JSONLinesSink)
    jsonl.send([_event("pageview", path="/a"), _event("custom", name="X", meta={"k": 1})])
    lines = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert [(line["type"], line["meta"]) for line in lines] == [("pageview", {}), ("custom", {"k": 1})]
    console = sink_from_url("console")
    assert isinstance(console, ConsoleSink)
    console.send([_event("pageview", path="/b")])
    assert json.loads(capsys.readouterr().out)["path"] == "/b"
    memory = sink_from_url("memory")
    assert isinstance(memory, InMemorySink)
    memory.send([_event("pageview")])
    assert len(memory.wait_for(1)) == 1
    monkeypatch.chdir(tmp_path)  # a relative store path is relative to the working directory
    store_sink = sink_from_url("sqlite:///./x.db")
    assert isinstance(store_sink, SQLiteSink) and (tmp_path / "x.db").is_file()
    store_sink.close()
    with pytest.raises(ValueError, match=r"known sinks: console, .*memory, .*none, .*otlp, .*sqlite"):
        sink_from_url("kafka://broker/topic")


def test_the_report_is_one_snapshot_while_the_app_writes(tmp_path: Path) -> None:
    """While a writer commits, each report's numbers are of one moment: every commit adds 3 pageviews by
    2 new visitors (one in each half of the ids), 1 error and 2 custom events, and every report shows
    whole commits only, though its sections are read on three connections."""
    database = tmp_path / "a.db"
    connect(database).close()
    stop = threading.Event()
    commits = [0]

    def write() -> None:
        with contextlib.closing(connect(database)) as db:
            while not stop.is_set():
                n = commits[0]
                when = NOW - timedelta(seconds=n % 3600)
                rows = [
                    _event("pageview", timestamp=when, visitor_id=f"0{n:08x}", route="/a"),
                    _event("pageview", timestamp=when, visitor_id=f"0{n:08x}", route="/b"),
                    _event("pageview", timestamp=when, visitor_id=f"9{n:08x}", route="/a"),
                    _event("error", timestamp=when, error_type="E", error_message="m"),
                    _event("custom", timestamp=when, name="X"),
                    _event("custom", timestamp=when, name="Y"),
                ]
                db.execute("BEGIN")
                db.executemany(INSERT, [row._replace(event_id=f"{n}-{i}") for i, row in enumerate(rows)])
                db.execute("COMMIT")
                commits[0] += 1

    writer = threading.Thread(target=write)
    writer.start()
    seen = set()
    try:
        for _ in range(60):
            report = build_report(database, NOW - timedelta(days=1))
            k = report.errors
            assert (report.pageviews, report.visitors, report.custom_events) == (3 * k, 2 * k, 2 * k)
            assert sum(row.pageviews for row in report.routes) == 3 * k
            assert {row.value: row.count for row in report.custom} == ({"X": k, "Y": k} if k else {})
            seen.add(k)
    finally:
        stop.set()
        writer.join()
    assert len(seen) > 10  # the writer committed between reports: they ran during the writes
