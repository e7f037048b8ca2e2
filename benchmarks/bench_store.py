"""The embedded store at size: insert rate, report time and query plans, migration, outbox throughput.

* Insert rate: events per second through ``SQLiteSink.send`` in batches of 1 000, into an
  empty store, with retention off and with retention deleting as it goes (half the events
  are older than the window).
* Report time: ``build_report`` for the default 24 h window and for ``--since 30d`` on a
  store of ``--events`` events over 30 days, a tenth of them (``--recent``) in the last 24 h,
  with ~100 pages, thousands of visitors a day, some users, errors and custom events. The
  rows are generated straight into the table (what the sink writes, made faster than spans
  could be) and the file is kept in ``~/.cache/otel-user-tracking/bench`` for the next run.
  ``--profile`` times each statement the report issues, with its query plan.
* Migration: opening a store of 1 000 000 events written by the previous schema version.
* Outbox throughput: events per second written to the outbox and forwarded to a loopback
  PostHog answering 200.

Run: ``python benchmarks/bench_store.py [--events 10000000 --recent 1000000] [--profile]
[--report-only]``; 10 000 000 events take ~2 minutes of CPU to generate and 4.2 GB of disk.
Report times are wall clock and CPU (the report's threads included): on a shared machine
the CPU figure is the steadier one.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import tempfile
import time
from datetime import datetime, timedelta, timezone
from functools import partial
from itertools import accumulate
from pathlib import Path
from typing import Any, Callable, Optional

os.environ.setdefault("OTEL_PYTHON_USER_TRACKING_SINKS", "none")

from _capture import CaptureServer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

import otel_user_tracking as out
from otel_user_tracking import attributes as attrs
from otel_user_tracking.analytics.events import FIELDS, AnalyticsEvent
from otel_user_tracking.analytics.outbox import Outbox
from otel_user_tracking.store.report import build_report
from otel_user_tracking.store.sqlite.schema import (
    _MIGRATIONS,
    INSERT,
    SCHEMA_VERSION,
    TABLE,
    connect,
    connect_readonly,
)

PAGES = ["/", "/products", "/products/{id}", "/cart", "/checkout", "/account", "/search", "/blog/{slug}"]
REFERRERS = [None, None, "https://www.google.com/", "https://news.ycombinator.com/", "https://t.co/x"]
LOCALES = ["en-US", "de-DE", "fr-FR", "en-GB", None]


def events(count: int, start: datetime, span: timedelta, seed: int = 7) -> list[AnalyticsEvent]:
    rng = random.Random(seed)
    made = []
    step = span / max(count, 1)
    for n in range(count):
        kind = "pageview" if n % 50 else "error"
        page = rng.choice(PAGES)
        made.append(
            AnalyticsEvent(
                type=kind,  # type: ignore[arg-type]
                trace_id=f"{rng.getrandbits(128):032x}",
                span_id=f"{rng.getrandbits(64):016x}",
                timestamp=start + step * n,
                method="GET",
                path=page.replace("{id}", str(n % 500)).replace("{slug}", "post"),
                route=page,
                status_code=500 if kind == "error" else 200,
                duration_ms=round(rng.uniform(1, 80), 3),
                referrer=rng.choice(REFERRERS),
                locale=rng.choice(LOCALES),
                user_agent="Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0",
                # What the conversion fills from that agent (analytics/devices.py).
                client="browser",
                browser="Chrome",
                browser_version="126",
                os="Linux",
                device_type="desktop",
                visitor_id=f"{rng.getrandbits(40):010x}",
                error_type="RuntimeError" if kind == "error" else None,
                error_message="boom" if kind == "error" else None,
            )
        )
    return made


def insert_rate(directory: Path, retention_days: float, batch: list[AnalyticsEvent]) -> float:
    sink = out.sinks.SQLiteSink(directory / f"insert-{retention_days}.db", retention_days=retention_days)
    sink.maintenance_interval = 0.0
    start = time.perf_counter()
    for index in range(0, len(batch), 1000):
        sink.send(batch[index : index + 1000])
    elapsed = time.perf_counter() - start
    sink.close()
    return len(batch) / elapsed


# The big store: realistic shapes, generated as rows (not events) so 10 million take about a
# minute and a half. ~100 pages and the other dimensions Zipf-distributed, a few thousand
# visitors a day of whom some come back, some signed-in users, 1 % errors, 3 % custom events.
BIG_PAGES = (
    ["/", "/pricing", "/login", "/signup", "/search", "/cart", "/checkout", "/account", "/products/{id}"]
    + [f"/{section}/{{slug}}" for section in ("blog", "news", "help", "careers", "changelog")]
    + [f"/docs/page-{n}" for n in range(86)]
)
BIG_REFERRERS = [None] * 40 + [f"https://site{n}.example/" for n in range(60)]
BIG_LOCALES = [None, "en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "ja-JP", "pt-BR", "it-IT", "nl-NL", "pl-PL"]
BIG_SOURCES = [None] * 20 + ["newsletter", "twitter", "google", "ads", "partner", "reddit"]
BIG_ERRORS = [f"{kind}Error" for kind in ("Runtime", "Key", "Value", "Timeout", "Connection", "Type")]
BIG_CUSTOM = [f"EVENT_{n}" for n in range(20)]
BIG_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "otel-user-tracking" / "bench"
_DAY_US = 86_400_000_000
_GENERATION = 3  # of big_rows: a change makes the cached stores be generated again


def _zipf(size: int) -> list[float]:
    return list(accumulate(1 / (rank + 1) for rank in range(size)))


def _digest(key: int) -> str:
    """16 hex characters, spread like the visitor ids' keyed hashes; distinct keys, distinct ids."""
    return f"{key * 0x9E3779B97F4A7C15 & 0xFFFF_FFFF_FFFF_FFFF:016x}"


def big_rows(count: int, first: int, start_us: int, end_us: int, day_visitors: int) -> list[tuple[Any, ...]]:
    """Rows ``first`` .. ``first + count`` of a store, evenly spread over ``[start_us, end_us)``."""
    rng = random.Random(first)

    def pick(values: list[Any], cumulative: Optional[list[float]] = None) -> list[Any]:
        return rng.choices(values, cum_weights=cumulative or _zipf(len(values)), k=count)

    kinds = rng.choices(["pageview", "error", "custom"], weights=[96, 1, 3], k=count)
    pages, referrers, locales = pick(BIG_PAGES), pick(BIG_REFERRERS), pick(BIG_LOCALES)
    sources, errors, names = pick(BIG_SOURCES), pick(BIG_ERRORS), pick(BIG_CUSTOM)
    day = start_us // _DAY_US
    returning = 50_000  # visitors seen on any day; the rest are the day's own
    visitors = [rng.randrange(day_visitors + returning) for _ in range(count)]
    step = (end_us - start_us) / count
    template: list[Any] = [None] * len(FIELDS)
    for field, value in _BIG_CONSTANTS.items():
        template[_AT[field]] = value
    rows = []
    for n in range(count):
        kind, page, visitor = kinds[n], pages[n], visitors[n]
        index = first + n
        hex_id = f"{index:032x}"
        error = kind == "error"
        row = template.copy()
        row[_EVENT_ID] = row[_TRACE_ID] = hex_id
        row[_TYPE] = kind
        row[_TS_US] = start_us + int(n * step)
        row[_SPAN_ID] = hex_id[16:]
        row[_NAME] = names[n] if kind == "custom" else None
        row[_PATH] = page.replace("{id}", "42").replace("{slug}", "post")
        row[_ROUTE] = row[_PAGE] = page
        row[_STATUS] = 500 if error else 200
        row[_SERVICE] = "shop" if n % 10 else "api"  # two services writing one store
        row[_REFERRER], row[_LOCALE], row[_UTM_SOURCE] = referrers[n], locales[n], sources[n]
        row[_USER_ID] = f"user{visitor % 5000}" if visitor % 10 == 0 else None
        row[_VISITOR_ID] = (
            None if visitor % 20 == 1 else _digest(visitor if visitor < returning else day << 24 | visitor)
        )
        if error:
            row[_ERROR_TYPE], row[_ERROR_MESSAGE] = errors[n], f"boom #{index % 1000}"
        elif kind == "custom":
            row[_META] = '{"plan":"pro"}'
        rows.append(tuple(row))
    return rows


# big_rows fills its rows by field name (EventRecord's field list), like the conversion.
_AT = {name: index for index, name in enumerate(FIELDS)}
_BIG_CONSTANTS = {
    "method": "GET",
    "scheme": "https",
    "host": "shop.example",
    "duration_ms": 12.5,
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0",
    "deployment_environment": "production",
}
_EVENT_ID, _TYPE, _TS_US, _TRACE_ID, _SPAN_ID, _NAME, _PATH, _ROUTE, _PAGE, _STATUS = (
    _AT[name]
    for name in (
        "event_id",
        "type",
        "ts_us",
        "trace_id",
        "span_id",
        "name",
        "path",
        "route",
        "page",
        "status_code",
    )
)
_REFERRER, _LOCALE, _UTM_SOURCE, _USER_ID, _VISITOR_ID = (
    _AT[name] for name in ("referrer", "locale", "utm_source", "user_id", "visitor_id")
)
_ERROR_TYPE, _ERROR_MESSAGE, _META, _SERVICE = (
    _AT[name] for name in ("error_type", "error_message", "meta_json", "service_name")
)


def build_big_store(count: int, recent: int, version: int = SCHEMA_VERSION) -> Path:
    """A store of ``count`` events over 30 days, ``recent`` of them in the last 24 h, cached on disk.

    The events end at a fixed instant (``store_end``), so a cached file gives the same windows
    however old it is; each schema ``version`` has its own file.
    """
    path = BIG_CACHE / f"store-{count}-{recent}-v{version}-g{_GENERATION}.db"
    if path.exists():
        return path
    BIG_CACHE.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(".partial")
    scratch.unlink(missing_ok=True)
    end_us = (int(time.time()) // 86_400) * _DAY_US
    spans = [(count - recent, end_us - 30 * _DAY_US, end_us - _DAY_US), (recent, end_us - _DAY_US, end_us)]
    db = sqlite3.connect(scratch, isolation_level=None)
    db.execute("PRAGMA journal_mode=OFF")  # a scratch file until it is complete: no journal
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-1048576")
    for statements in _MIGRATIONS[:version]:
        for statement in statements:
            db.execute(statement)
    db.execute(f"PRAGMA user_version = {version}")
    start = time.perf_counter()
    first = 0
    for events_in_span, span_start, span_end in spans:
        per_day = events_in_span * _DAY_US / (span_end - span_start)
        chunk = 500_000
        for offset in range(0, events_in_span, chunk):
            size = min(chunk, events_in_span - offset)
            chunk_start = span_start + (span_end - span_start) * offset // events_in_span
            chunk_end = span_start + (span_end - span_start) * (offset + size) // events_in_span
            rows = big_rows(size, first, chunk_start, chunk_end, day_visitors=int(per_day / 15))
            db.execute("BEGIN")
            db.executemany(INSERT, rows)
            db.execute("COMMIT")
            first += size
            print(f"  {first} events ({time.perf_counter() - start:.0f} s)", flush=True)
    db.execute("PRAGMA journal_mode=WAL")  # not analyzed, like every store the sink writes
    db.close()
    os.replace(scratch, path)
    return path


def store_end(path: Path) -> datetime:
    """The instant just after the store's newest event: the ``now`` its report windows count from."""
    db = connect_readonly(path)
    (last,) = db.execute(f"SELECT MAX(ts_us) FROM {TABLE}").fetchone()
    db.close()
    return datetime.fromtimestamp((last + 1) / 1e6, tz=timezone.utc)


def timed(work: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole process, threads included) of ``work()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def report_times(path: Path) -> dict[str, tuple[float, float]]:
    """Wall and CPU seconds of the report for the default 24 h window and for ``--since 30d``."""
    end = store_end(path)
    windows = {"24 h": timedelta(hours=24), "30 d": timedelta(days=30)}
    return {name: timed(partial(build_report, path, end - window)) for name, window in windows.items()}


def profile(path: Path, window: timedelta) -> list[tuple[float, str, list[str]]]:
    """(seconds, statement, query plan) of each statement the report issues, run one at a time."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    issued: list[str] = []
    connection.set_trace_callback(issued.append)
    build_report(connection, store_end(path) - window)
    connection.set_trace_callback(None)
    measured = []
    for sql in issued:
        plan = [row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}")]
        start = time.perf_counter()
        connection.execute(sql).fetchall()
        measured.append((time.perf_counter() - start, " ".join(sql.split()), plan))
    connection.close()
    return measured


def migration_time(directory: Path, count: int) -> float:
    """Seconds to open (migrate) a copy of a ``count``-event store of the previous schema version."""
    copy = directory / "previous.db"
    shutil.copyfile(build_big_store(count, count // 10, SCHEMA_VERSION - 1), copy)
    start = time.perf_counter()
    connect(copy).close()
    return time.perf_counter() - start


def outbox_rate(directory: Path, count: int) -> tuple[float, float]:
    """(events/s written to the outbox in batches of 1 000, events/s from span end to a loopback
    PostHog through a durable processor)."""

    batch = events(count, datetime.now(timezone.utc), timedelta(minutes=1))
    outbox = Outbox(directory / "put.db")
    start = time.perf_counter()
    for index in range(0, count, 1000):
        outbox.put("bench", batch[index : index + 1000])
    stored = count / (time.perf_counter() - start)
    outbox.close()
    capture = CaptureServer()
    provider = TracerProvider()
    sink = out.sinks.PostHogSink("phc_bench", url=capture.url)
    processor = out.AnalyticsSpanProcessor(
        sinks=[sink], durable=directory / "outbox.db", flush_at=1000, max_queue_size=count * 2
    )
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("bench")
    start = time.perf_counter()
    for n in range(count):
        attributes = {attrs.REQUEST_TYPE: "http", "http.method": "GET", "http.target": f"/p/{n}"}
        with tracer.start_as_current_span("GET /p", kind=SpanKind.SERVER, attributes=attributes):
            pass
        if n % 1000 == 999:
            # A burst of spans faster than the converter overflows its 1 024-span queue (dropped
            # and counted, by design); a server's request rate paces itself, the loop must too.
            processor.force_flush(120_000)
    processor.force_flush(120_000)
    capture.wait_for(count, 120)
    forwarded = count / (time.perf_counter() - start)
    provider.shutdown()
    capture.close()
    return stored, forwarded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--recent", type=int, default=None, help="events in the last 24 h (a tenth)")
    parser.add_argument("--insert-events", type=int, default=100_000)
    parser.add_argument("--outbox-events", type=int, default=20_000)
    parser.add_argument("--profile", action="store_true", help="time and explain each report query")
    parser.add_argument(
        "--report-only", action="store_true", help="skip the insert, migration and outbox runs"
    )
    parser.add_argument("--directory", default=None, help="where the stores go (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.directory) as name:
        directory = Path(name)
        if not args.report_only:
            now = datetime.now(timezone.utc)
            recent = events(args.insert_events, now - timedelta(days=1), timedelta(hours=12))
            mixed = events(args.insert_events, now - timedelta(days=120), timedelta(days=119))
            print(f"insert, retention off:        {insert_rate(directory, 0, recent):10.0f} events/s")
            print(f"insert, retention 90 days on: {insert_rate(directory, 90, mixed):10.0f} events/s")
            seconds = migration_time(directory, 1_000_000)
            versions = f"v{SCHEMA_VERSION - 1} -> v{SCHEMA_VERSION}"
            print(f"migration of a 1000000-event store, {versions}: {seconds:.1f} s")
            stored, forwarded = outbox_rate(directory, args.outbox_events)
            print(f"outbox: written in batches of 1000       {stored:10.0f} events/s")
            print(f"outbox: span end -> outbox -> loopback PostHog {forwarded:10.0f} events/s")
        recent_count = args.events // 10 if args.recent is None else args.recent
        print(f"store of {args.events} events over 30 days, {recent_count} in the last 24 h ...", flush=True)
        seconds, _ = timed(lambda: build_big_store(args.events, recent_count))
        path = build_big_store(args.events, recent_count)
        print(f"  {path}: {path.stat().st_size / 1e9:.2f} GB, ready in {seconds:.0f} s (0 when cached)")
        for name, (wall, cpu) in report_times(path).items():
            print(f"report, {name} window: {wall:6.2f} s wall, {cpu:6.2f} s CPU")
        if args.profile:
            for span in (timedelta(hours=24), timedelta(days=30)):
                print(f"statements of the report, window {span}, one at a time on one connection:")
                for seconds, sql, plan in profile(path, span):
                    print(f"  {seconds:6.2f} s  {sql[:150]}")
                    for step in plan:
                        print(f"            {step}")


if __name__ == "__main__":
    main()
