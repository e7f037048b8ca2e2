"""Analytics cost: ``AnalyticsSpanProcessor.on_end`` per span and pipeline throughput.

Both are ratios against the SDK's ``BatchSpanProcessor`` measured in the same process on the
same spans: ``on_end`` against ``BatchSpanProcessor.on_end`` (what every traced app already
pays per span), and end-to-end throughput (``on_end`` of N spans, then ``force_flush``) to a
sink that does nothing, against the BatchSpanProcessor's throughput to an exporter that does
nothing. Our pipeline also converts each span into events; the SDK's only hands spans over.

A third figure is the whole default path on one core: spans to events to the embedded
SQLite store (``SQLiteSink`` on a temporary file), in events per second; the process pins
itself to one core where it can, so the worker threads share it as in a server. Its budget
follows, each part timed alone in a tight loop: the conversion, the insert from Python
(``insert_events`` in transactions of 1 000), and the store's own floor: the same rows
copied by SQLite alone (``INSERT ... SELECT`` from an in-memory table, no Python per row)
into a store file with its indexes, what no Python writer can go below.

Run: ``python benchmarks/bench_analytics.py [--spans 20000] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("OTEL_PYTHON_USER_TRACKING_SINKS", "none")

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

import otel_user_tracking as out
from otel_user_tracking import attributes as attrs
from otel_user_tracking.analytics.conversion import convert_span
from otel_user_tracking.analytics.span_queue import MAX_SPANS
from otel_user_tracking.config import get_config
from otel_user_tracking.store.sqlite import schema as event_store


class NullExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class NullSink:
    name = "null"
    max_batch_size = 1_000_000

    def send(self, batch: Sequence[out.AnalyticsEvent]) -> None:
        return None

    def close(self) -> None:
        return None


def request_spans(count: int) -> list[ReadableSpan]:
    """Ended server spans shaped like the middleware's, one with an exception per 50."""
    collected: list[ReadableSpan] = []

    class Collect(BatchSpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            collected.append(span)

    provider = TracerProvider()
    provider.add_span_processor(Collect(NullExporter()))
    tracer = provider.get_tracer("bench")
    for index in range(count):
        attributes: dict[str, Any] = {
            attrs.REQUEST_TYPE: "http",
            "http.method": "GET",
            "http.scheme": "https",
            "http.target": f"/users/{index % 100}",
            "http.url": f"https://shop.example/users/{index % 100}?utm_source=news",
            "http.route": "/users/{id}",
            "http.status_code": 200,
            "http.user_agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36",
            attrs.HOST: "shop.example",
            attrs.LOCALE: "en-US",
            attrs.VISITOR_ID: f"{index % 997:016x}",
            "user.id": str(index % 300),
        }
        name = "GET /users/{id}"
        with tracer.start_as_current_span(name, kind=SpanKind.SERVER, attributes=attributes) as span:
            if index % 50 == 0:
                span.record_exception(RuntimeError("boom"))
    provider.shutdown()
    return collected


def run(processor: SpanProcessor, spans: list[ReadableSpan]) -> tuple[float, float]:
    """Seconds for ``on_end`` of every span, and for that plus the flushes that deliver them.

    Spans go in slices no larger than our span queue (``MAX_SPANS``), each flushed before the
    next, so none is dropped; only the ``on_end`` calls count towards the first figure.
    """
    on_end = 0.0
    start = time.perf_counter()
    for first in range(0, len(spans), MAX_SPANS):
        slice_start = time.perf_counter()
        for span in spans[first : first + MAX_SPANS]:
            processor.on_end(span)
        on_end += time.perf_counter() - slice_start
        processor.force_flush(60_000)
    return on_end, time.perf_counter() - start


def bench(spans: list[ReadableSpan], rounds: int) -> dict[str, float]:
    best: dict[str, float] = {}
    count = len(spans)
    for _ in range(rounds):
        # Batches larger than the run keep both workers idle while on_end is timed, so the
        # first figure is the request path's own cost and the second adds the worker's.
        sdk = BatchSpanProcessor(
            NullExporter(),
            max_queue_size=count + 1,
            max_export_batch_size=count,
            schedule_delay_millis=60_000,
        )
        ours = out.AnalyticsSpanProcessor(
            sinks=[NullSink()], max_queue_size=count * 2, flush_at=min(count + 1, 100_000), flush_interval=60
        )
        for name, processor in (("sdk", sdk), ("ours", ours)):
            on_end, total = run(processor, spans)
            best[f"{name}_on_end"] = min(best.get(f"{name}_on_end", float("inf")), on_end)
            best[f"{name}_total"] = min(best.get(f"{name}_total", float("inf")), total)
        assert ours.stats()["null"].sent == count + (count + 49) // 50
        sdk.shutdown()
        ours.shutdown()
    return best


def bench_store(spans: list[ReadableSpan], rounds: int) -> float:
    """Best seconds for spans -> events -> SQLite (``on_end`` of all, then the flush that stores them)."""
    best = float("inf")
    expected = len(spans) + sum(1 for span in spans if span.events)
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "bench.db")
            ours = out.AnalyticsSpanProcessor(
                sinks=[out.sinks.SQLiteSink(path)], max_queue_size=len(spans) * 2, flush_at=1000
            )
            _, total = run(ours, spans)
            ours.shutdown()
            with sqlite3.connect(path) as db:
                stored = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            assert stored == expected, f"{stored} rows for {expected} events"
            best = min(best, total)
    return best


def budget(spans: list[ReadableSpan], rounds: int) -> dict[str, float]:
    """Best µs per span for the conversion, and per event for the insert and the store's floor."""
    config = get_config()
    events = [event for span in spans for event in convert_span(span, config)]
    columns = ", ".join(event_store.COLUMNS)
    convert, insert, floor = float("inf"), float("inf"), float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for span in spans:
            convert_span(span, config)
        convert = min(convert, (time.perf_counter() - start) / len(spans))
        with tempfile.TemporaryDirectory() as directory:
            python_store = event_store.connect(os.path.join(directory, "python.db"))
            start = time.perf_counter()
            for first in range(0, len(events), 1000):
                python_store.execute("BEGIN")
                event_store.insert_events(python_store, events[first : first + 1000])
                python_store.execute("COMMIT")
            insert = min(insert, (time.perf_counter() - start) / len(events))
            python_store.close()
            sqlite_store = event_store.connect(os.path.join(directory, "sqlite.db"))
            sqlite_store.execute("ATTACH ':memory:' AS staged")
            sqlite_store.execute(f"CREATE TABLE staged.events AS SELECT {columns} FROM main.events WHERE 0")
            values = ", ".join("?" * len(event_store.COLUMNS))
            sqlite_store.executemany(f"INSERT INTO staged.events VALUES ({values})", events)
            copy = (
                f"INSERT OR IGNORE INTO main.events ({columns}) "
                f"SELECT {columns} FROM staged.events WHERE rowid > ? AND rowid <= ?"
            )
            start = time.perf_counter()
            for first in range(0, len(events), 1000):
                sqlite_store.execute("BEGIN")
                sqlite_store.execute(copy, (first, first + 1000))
                sqlite_store.execute("COMMIT")
            floor = min(floor, (time.perf_counter() - start) / len(events))
            sqlite_store.close()
    return {"convert": convert * 1e6, "insert": insert * 1e6, "floor": floor * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    spans = request_spans(args.spans)
    best = bench(spans, args.rounds)
    store = bench_store(spans, args.rounds)
    parts = budget(spans, args.rounds)
    per_span = {name: seconds / len(spans) * 1e6 for name, seconds in best.items()}
    events = len(spans) + sum(1 for span in spans if span.events)
    print(f"{len(spans)} spans ({events} events), best of {args.rounds} rounds")
    print(f"on_end   SDK BatchSpanProcessor {per_span['sdk_on_end']:6.2f} µs/span")
    print(f"on_end   AnalyticsSpanProcessor {per_span['ours_on_end']:6.2f} µs/span")
    print(f"  ratio ours/SDK: {best['ours_on_end'] / best['sdk_on_end']:.2f}")
    print(f"pipeline SDK to null exporter   {len(spans) / best['sdk_total']:10.0f} spans/s")
    print(f"pipeline ours to null sink      {events / best['ours_total']:10.0f} events/s")
    print(f"  ratio ours/SDK (time for the same spans): {best['ours_total'] / best['sdk_total']:.2f}")
    print(f"spans -> events -> SQLite on one core {events / store:10.0f} events/s")
    print(f"  {store / events * 1e6:.2f} µs/event; its parts alone, in tight loops:")
    print(f"  conversion                           {parts['convert']:6.2f} µs/span")
    print(f"  insert from Python (insert_events)   {parts['insert']:6.2f} µs/event")
    print(f"  SQLite alone (INSERT ... SELECT)     {parts['floor']:6.2f} µs/event: the store's floor")


if __name__ == "__main__":
    main()
