"""The embedded store at size: insert rate with and without retention, report time, outbox throughput.

* Insert rate: events per second through ``SQLiteSink.send`` in batches of 1 000, into an
  empty store, with retention off and with retention deleting as it goes (half the events
  are older than the window).
* Report time: ``build_report`` for the default 24 h window and for ``--since 30d`` on a
  store of ``--events`` events spread over 30 days (generated straight into the table: the
  rows are what the sink writes, made faster than spans could be).
* Outbox throughput: events per second written to the outbox and forwarded to a loopback
  PostHog answering 200.

Run: ``python benchmarks/bench_store.py [--events 1000000]`` (10 000 000 takes a few minutes
to generate and about 3 GB of disk).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

os.environ.setdefault("OTEL_PYTHON_USER_TRACKING_SINKS", "none")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

import otel_user_tracking as out
from otel_user_tracking import attributes as attrs
from otel_user_tracking.analytics.events import AnalyticsEvent
from otel_user_tracking.analytics.outbox import Outbox
from otel_user_tracking.analytics.report import build_report
from otel_user_tracking.analytics.store import INSERT, connect

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


def fill(path: Path, count: int) -> None:
    """``count`` events over the last 30 days, written straight into the table in big transactions."""
    now = datetime.now(timezone.utc)
    db = connect(path)
    db.execute("PRAGMA synchronous=OFF")
    chunk = 200_000
    for first in range(0, count, chunk):
        size = min(chunk, count - first)
        start = now - timedelta(days=30) + timedelta(days=30) * first / count
        rows = events(size, start, timedelta(days=30) * size / count, seed=first)
        db.execute("BEGIN")
        db.executemany(INSERT, rows)
        db.execute("COMMIT")
        print(f"  {first + size} events", flush=True)
    db.execute("ANALYZE")
    db.close()


def report_times(path: Path) -> tuple[float, float]:
    now = datetime.now(timezone.utc)
    start = time.perf_counter()
    build_report(path, now - timedelta(hours=24))
    day = time.perf_counter() - start
    start = time.perf_counter()
    build_report(path, now - timedelta(days=30))
    month = time.perf_counter() - start
    return day, month


def outbox_rate(directory: Path, count: int) -> tuple[float, float]:
    """(events/s written to the outbox in batches of 1 000, events/s from span end to a loopback
    PostHog through a durable processor)."""
    received = [0]
    done = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received[0] += len(json.loads(gzip.decompress(body))["batch"])
            if received[0] >= count:
                done.set()
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            return None

    batch = events(count, datetime.now(timezone.utc), timedelta(minutes=1))
    outbox = Outbox(directory / "put.db")
    start = time.perf_counter()
    for index in range(0, count, 1000):
        outbox.put("bench", batch[index : index + 1000])
    stored = count / (time.perf_counter() - start)
    outbox.close()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    provider = TracerProvider()
    sink = out.sinks.PostHogSink("phc_bench", url=f"http://127.0.0.1:{server.server_address[1]}")
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
    processor.force_flush(120_000)
    done.wait(120)
    forwarded = count / (time.perf_counter() - start)
    provider.shutdown()
    server.shutdown()
    server.server_close()
    return stored, forwarded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--insert-events", type=int, default=100_000)
    parser.add_argument("--outbox-events", type=int, default=20_000)
    parser.add_argument("--directory", default=None, help="where the stores go (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.directory) as name:
        directory = Path(name)
        now = datetime.now(timezone.utc)
        recent = events(args.insert_events, now - timedelta(days=1), timedelta(hours=12))
        mixed = events(args.insert_events, now - timedelta(days=120), timedelta(days=119))
        print(f"insert, retention off:        {insert_rate(directory, 0, recent):10.0f} events/s")
        print(f"insert, retention 90 days on: {insert_rate(directory, 90, mixed):10.0f} events/s")
        stored, forwarded = outbox_rate(directory, args.outbox_events)
        print(f"outbox: written in batches of 1000       {stored:10.0f} events/s")
        print(f"outbox: span end -> outbox -> loopback PostHog {forwarded:10.0f} events/s")
        path = directory / "big.db"
        print(f"generating a store of {args.events} events over 30 days ...", flush=True)
        fill(path, args.events)
        day, month = report_times(path)
        print(f"report on {args.events} events: 24 h window {day:.2f} s, --since 30d {month:.2f} s")


if __name__ == "__main__":
    main()
