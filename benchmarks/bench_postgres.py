"""The PostgreSQL store against the embedded SQLite one, in the same run: writes, fleets, reports.

* Spans -> events -> store on one core: ``AnalyticsSpanProcessor`` with ``PostgreSQLSink``
  and with ``SQLiteSink`` (the process pinned to one core, as ``bench_analytics.py`` does),
  events per second and the ratio PostgreSQL/SQLite. PostgreSQL's own processes run on
  the other core: that is the point of a database server.
* The sink alone: ``send`` of batches of 2 000 rows (``COPY``), and of the same batches sent
  again (each merged through the temporary table and stored once): events per second.
* Four writer processes at once, each its own events through its own sink, on one
  PostgreSQL and on one SQLite file: the aggregate events per second.
* The report and the dashboard on ``--events`` events over 30 days, a tenth in the last
  24 h (``bench_store.big_rows``, copied into PostgreSQL and into a SQLite file): wall and
  CPU seconds on each backend; ``--plans`` prints PostgreSQL's plan of each statement.

The server is started like the tests' (``tests/_postgres.py``: ``initdb`` + ``pg_ctl`` in a
temporary directory; ``fsync`` off, so the write figures are of the CPU, not of this
machine's disk), or ``--url`` names one. Run: ``python benchmarks/bench_postgres.py
[--spans 20000] [--events 10000000] [--skip-report]``. The machine is shared and noisy: compare
the ratios of one run.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OTEL_PYTHON_USER_TRACKING_SINKS", "none")

from bench_analytics import request_spans, run

import otel_user_tracking as out
from otel_user_tracking.analytics.conversion import convert_span
from otel_user_tracking.config import get_config
from otel_user_tracking.sinks import PostgreSQLSink, SQLiteSink
from otel_user_tracking.store.dashboard import build_dashboard, journey
from otel_user_tracking.store.reader import open_reader, reading
from otel_user_tracking.store.report import build_report
from otel_user_tracking.store.sqlite.schema import COLUMNS, TABLE
from tests._postgres import postgres_server

BATCH = 2000
_DAY_US = 86_400_000_000


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:10.0f} events/s"


def spans_to_store(sink_factory: Callable[[], Any], spans: list[Any], rounds: int) -> tuple[float, float]:
    """Best (wall, this process's CPU) seconds for spans -> events -> the sink (``on_end`` of all,
    then the flushes): the CPU is what the app pays; PostgreSQL's own work is in its processes."""
    best, best_cpu = float("inf"), float("inf")
    for _ in range(rounds):
        sink = sink_factory()
        processor = out.AnalyticsSpanProcessor(sinks=[sink], max_queue_size=len(spans) * 2, flush_at=1000)
        cpu = time.process_time()
        _, total = run(processor, spans)
        processor.shutdown()
        best, best_cpu = min(best, total), min(best_cpu, time.process_time() - cpu)
    return best, best_cpu


def stored(url: str) -> int:
    with contextlib.closing(open_reader(url)) as reader:
        return int(reader.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0])


def _events(spans: list[Any]) -> list[Any]:
    config = get_config()
    return [event for span in spans for event in convert_span(span, config)]


def sink_alone(url: str, events: list[Any]) -> tuple[float, float]:
    """Seconds for ``send`` of every batch, and for sending them all again (merged, stored once)."""
    sink = PostgreSQLSink(url, retention_days=0)
    timings = []
    for _ in range(2):
        start = time.perf_counter()
        for first in range(0, len(events), BATCH):
            assert sink.send(events[first : first + BATCH]) is None
        timings.append(time.perf_counter() - start)
    sink.close()
    return timings[0], timings[1]


def _writer(target: str, prefix: str, events: list[Any], ready: Any, go: Any, done: Any) -> None:
    sink: Any = (
        PostgreSQLSink(target, retention_days=0)
        if target.startswith("postgresql")
        else SQLiteSink(target, retention_days=0, busy_timeout=30)
    )
    mine = [(f"{prefix}-{row[0]}", *row[1:]) for row in events]
    batch = BATCH if target.startswith("postgresql") else 1000
    if hasattr(sink, "check"):
        sink.check()
    ready.put(1)
    go.wait()
    for first in range(0, len(mine), batch):
        while sink.send(mine[first : first + batch]) is not None:
            pass
    sink.close()
    done.put(time.perf_counter())


def fleet(target: str, events: list[Any], writers: int = 4) -> float:
    """Seconds for ``writers`` processes to store their events at once (from the common start)."""
    context = multiprocessing.get_context("spawn")
    ready, done, go = context.Queue(), context.Queue(), context.Event()
    processes = [
        context.Process(target=_writer, args=(target, f"w{n}", events, ready, go, done))
        for n in range(writers)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        ready.get(timeout=120)
    start = time.perf_counter()
    go.set()
    ends = [done.get(timeout=600) for _ in processes]
    for process in processes:
        process.join()
    return max(ends) - start


def build_big_stores(url: str, path: Path, count: int, recent: int) -> datetime:
    """The same ``count`` events (``recent`` in the last day of 30) in PostgreSQL and in SQLite."""
    import psycopg
    from bench_store import big_rows

    from otel_user_tracking.store.postgres.schema import create_partition
    from otel_user_tracking.store.sqlite.schema import connect, insert_events

    end_us = (int(time.time()) // 86_400) * _DAY_US
    spans = [(count - recent, end_us - 30 * _DAY_US, end_us - _DAY_US), (recent, end_us - _DAY_US, end_us)]
    with contextlib.closing(PostgreSQLSink(url, retention_days=0)) as sink:
        sink.check()
    columns = ", ".join(COLUMNS)
    lite = connect(path)
    lite.execute("PRAGMA synchronous=OFF")
    start, first = time.perf_counter(), 0
    with contextlib.closing(psycopg.connect(url, autocommit=True)) as db:
        for day in range(30):
            db.execute(create_partition(end_us - (30 - day) * _DAY_US))
        for events_in_span, span_start, span_end in spans:
            per_day = events_in_span * _DAY_US / (span_end - span_start)
            chunk = 250_000
            for offset in range(0, events_in_span, chunk):
                size = min(chunk, events_in_span - offset)
                low = span_start + (span_end - span_start) * offset // events_in_span
                high = span_start + (span_end - span_start) * (offset + size) // events_in_span
                rows = big_rows(size, first, low, high, day_visitors=int(per_day / 15))
                with db.transaction(), db.cursor().copy(f"COPY {TABLE} ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                lite.execute("BEGIN")
                insert_events(lite, rows)  # type: ignore[arg-type]
                lite.execute("COMMIT")
                first += size
                print(f"  {first} events in both ({time.perf_counter() - start:.0f} s)", flush=True)
        db.execute(f"VACUUM ANALYZE {TABLE}")
    lite.close()
    return datetime.fromtimestamp(end_us / 1e6, tz=timezone.utc)


def timed(work: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def report_figures(url: str, path: Path, end: datetime) -> None:
    for name, window in (
        ("24 h", timedelta(hours=24)),
        ("7 d", timedelta(days=7)),
        ("30 d", timedelta(days=30)),
    ):
        since = end - window
        figures = []
        for source in (path, url):
            report = timed(lambda s=source, w=since: build_report(s, w))
            page = timed(lambda s=source, w=since: reading(s, lambda db: build_dashboard(db, w, now=end)))
            figures.append((report, page))
        (sq_report, sq_page), (pg_report, pg_page) = figures
        print(
            f"{name:>4}: report SQLite {sq_report[0]:6.2f} s, PostgreSQL {pg_report[0]:6.2f} s "
            f"(ratio {pg_report[0] / sq_report[0]:.2f}); dashboard SQLite {sq_page[0]:6.2f} s, "
            f"PostgreSQL {pg_page[0]:6.2f} s (ratio {pg_page[0] / sq_page[0]:.2f})",
            flush=True,
        )
    since_us = int((end - timedelta(days=7)).timestamp() * 1e6)
    for kind, column in (("visitor", "visitor_id"), ("user", "user_id")):
        sql = f"SELECT {column} FROM {TABLE} WHERE {column} IS NOT NULL ORDER BY ts_us DESC LIMIT 1"
        value = reading(path, lambda db, q=sql: db.execute(q).fetchone()[0])
        times = [
            timed(lambda s=source, k=kind, v=value: reading(s, lambda db: journey(db, k, (v,), since_us)))[0]
            for source in (path, url)
        ]
        print(f"journey by {kind} id, 7 d: SQLite {times[0]:6.2f} s, PostgreSQL {times[1]:6.2f} s")
    same = build_report(url, end - timedelta(days=30)) == build_report(path, end - timedelta(days=30))
    print(f"report of 30 d on PostgreSQL equals SQLite's: {same}")


@contextlib.contextmanager
def database(url: str) -> Iterator[Callable[[], str]]:
    if url:
        yield lambda: url
        return
    with postgres_server() as server:
        yield server.database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fleet-events", type=int, default=100_000, help="events per writer process")
    parser.add_argument("--events", type=int, default=1_000_000, help="events of the report's store")
    parser.add_argument("--skip-report", action="store_true")
    parser.add_argument("--report-only", action="store_true", help="skip the write and fleet runs")
    parser.add_argument("--url", default="", help="an existing server's database (default: start one)")
    parser.add_argument(
        "--directory", default=None, help="where the SQLite stores go (default: a temporary one)"
    )
    args = parser.parse_args()
    with database(args.url) as new_database, tempfile.TemporaryDirectory(dir=args.directory) as directory:
        here = Path(directory)
        if not args.report_only:
            spans = request_spans(args.spans)
            events = _events(spans)
            if hasattr(os, "sched_setaffinity"):
                cores = os.sched_getaffinity(0)
                os.sched_setaffinity(0, {min(cores)})
            counter = iter(range(1000))
            pg = spans_to_store(lambda: PostgreSQLSink(new_database(), retention_days=0), spans, args.rounds)
            sq = spans_to_store(
                lambda: SQLiteSink(here / f"s{next(counter)}.db", retention_days=0), spans, args.rounds
            )
            if hasattr(os, "sched_setaffinity"):
                os.sched_setaffinity(0, cores)
            print(f"{len(spans)} spans ({len(events)} events), best of {args.rounds}")
            for label, (wall, cpu) in (("PostgreSQL", pg), ("SQLite    ", sq)):
                print(
                    f"spans -> events -> {label} on one core {rate(len(events), wall)}, "
                    f"{cpu / len(events) * 1e6:5.1f} µs of the app's CPU an event"
                )
            print(
                f"  ratio PostgreSQL/SQLite: events/s {sq[0] / pg[0]:.2f}, "
                f"app CPU an event {pg[1] / sq[1]:.2f}"
            )
            once, again = sink_alone(new_database(), events)
            print(f"PostgreSQLSink.send, COPY in batches of {BATCH}  {rate(len(events), once)}")
            print(f"  the same batches again (merged, stored once) {rate(len(events), again)}")
            writer_events = (events * (args.fleet_events // len(events) + 1))[: args.fleet_events]
            writer_events = [e._replace(event_id=f"{n}-{e.event_id}") for n, e in enumerate(writer_events)]
            url = new_database()
            writer_events = [tuple(event) for event in writer_events]  # rows: what the sinks take
            pg_fleet = fleet(url, writer_events)
            assert stored(url) == 4 * len(writer_events)
            sq_fleet = fleet(str(here / "fleet.db"), writer_events)
            total = 4 * len(writer_events)
            print(f"4 writer processes, {total} events: PostgreSQL {rate(total, pg_fleet)} aggregate")
            print(f"4 writer processes, {total} events: one SQLite file {rate(total, sq_fleet)} aggregate")
            print(f"  ratio PostgreSQL/SQLite (events/s): {sq_fleet / pg_fleet:.2f}")
        if not args.skip_report:
            recent = args.events // 10
            print(
                f"report store: {args.events} events over 30 days, {recent} in the last 24 h ...", flush=True
            )
            url = new_database()
            end = build_big_stores(url, here / "big.db", args.events, recent)
            report_figures(url, here / "big.db", end)


if __name__ == "__main__":
    main()
