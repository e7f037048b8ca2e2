"""The PostgreSQL store on a real server: stored once, migrated, partitioned, read as SQLite is read."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Sequence
from contextlib import closing, redirect_stdout
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from otel_user_tracking.__main__ import main
from otel_user_tracking.analytics.events import AnalyticsEvent
from otel_user_tracking.sinks import PostgreSQLSink, SQLiteSink, sink_from_url
from otel_user_tracking.store.dashboard import build_dashboard, journey
from otel_user_tracking.store.postgres.schema import SCHEMA_VERSION, partition_name
from otel_user_tracking.store.reader import PostgresReader, open_reader, reading
from otel_user_tracking.store.report import build_report
from otel_user_tracking.store.scope import Scope
from otel_user_tracking.store.sessions import sessions_by_sql
from otel_user_tracking.store.sqlite.schema import SchemaError

from ._postgres import PASSWORD, PostgresServer
from .test_report_plans import NOW, generate, reference

DAY = timedelta(days=1)


def write_pg(url: str, events: Sequence[AnalyticsEvent], batch: int = 1000, **options: Any) -> PostgreSQLSink:
    sink = PostgreSQLSink(url, retention_days=0, **options)
    for start in range(0, len(events), batch):
        assert sink.send(events[start : start + batch]) is None
    return sink


def write_sqlite(path: Path, events: Sequence[AnalyticsEvent]) -> Path:
    sink = SQLiteSink(path, retention_days=0)
    for start in range(0, len(events), sink.max_batch_size):
        sink.send(events[start : start + sink.max_batch_size])
    sink.close()
    return path


def count(url: str, sql: str = "SELECT count(*), count(DISTINCT event_id) FROM events") -> Any:
    import psycopg

    with closing(psycopg.connect(url, autocommit=True)) as connection:
        cursor = connection.execute(sql)
        return cursor.fetchone() if cursor.description else None


@pytest.fixture(scope="module")
def events() -> list[AnalyticsEvent]:
    return generate(4000, seed=23)


@pytest.fixture(scope="module")
def stores(
    postgres: PostgresServer, events: list[AnalyticsEvent], tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path]:
    """The same events in a PostgreSQL database and in a SQLite file."""
    url = postgres.database()
    write_pg(url, events).close()
    return url, write_sqlite(tmp_path_factory.mktemp("pg") / "same.db", events)


def test_a_batch_sent_twice_is_stored_once(postgres: PostgresServer, events: list[AnalyticsEvent]) -> None:
    """A batch retried after its commit (or half of it stored) adds no row: event ids are unique."""
    url = postgres.database()
    sink = write_pg(url, events[:1500])
    assert sink.send(events[1000:2000]) is None  # half stored already
    assert sink.send(events[:500]) is None
    assert count(url) == (2000, 2000)
    assert sink.merged_batches == 2
    sink.close()


def test_the_url_names_the_sink_without_its_password(postgres: PostgresServer) -> None:
    """A ``postgresql://user:password@host/db`` URL builds the sink; its name and repr hide the password."""
    url = postgres.database()
    sink = sink_from_url(url)
    assert isinstance(sink, PostgreSQLSink)
    port = postgres.port
    assert sink.name == f"postgresql(127.0.0.1:{port})"
    assert PASSWORD not in repr(sink) + sink.name + sink.identity
    sink.close()


@pytest.mark.parametrize("password", [PASSWORD, "wrong-" + PASSWORD])
def test_failures_say_what_happened_without_the_password(
    postgres: PostgresServer, caplog: pytest.LogCaptureFixture, password: str
) -> None:
    """Refused logins and unreachable servers are retried, counted, logged: the password appears nowhere."""
    from otel_user_tracking.sinks import RetryableSinkError

    url = postgres.url(password=password)
    if password == PASSWORD:
        url = url.replace(f":{postgres.port}/", ":1/")  # nothing listens there
    caplog.set_level(logging.DEBUG)
    sink = PostgreSQLSink(url, connect_timeout=2)
    sink.check()  # the app starts: the database may come later
    with pytest.raises(RetryableSinkError) as raised:
        sink.send(generate(3, seed=1))
    text = str(raised.value) + caplog.text + repr(sink) + sink.name
    assert "postgresql" in str(raised.value) and password not in text
    sink.close()


def test_report_and_dashboard_equal_sqlites_on_the_same_events(
    stores: tuple[str, Path], events: list[AnalyticsEvent]
) -> None:
    """Every report and dashboard number, row and order is the same on PostgreSQL as on SQLite."""
    url, path = stores
    for window in (timedelta(hours=1), DAY, 2 * DAY, 30 * DAY):
        since = NOW - window
        for limit in (3, 1000):
            assert build_report(url, since, limit=limit) == reference(events, since, limit)
            assert build_report(url, since, limit=limit) == build_report(path, since, limit=limit)
        on_pg = reading(url, lambda db, s=since: build_dashboard(db, s, now=NOW))
        assert on_pg == reading(path, lambda db, s=since: build_dashboard(db, s, now=NOW))
    visitor = next(event.visitor_id for event in events if event.visitor_id)
    steps = reading(url, lambda db: journey(db, "visitor", (visitor,), 0))
    assert steps and steps == reading(path, lambda db: journey(db, "visitor", (visitor,), 0))


def test_filtered_reports_and_the_sessions_statement_equal_sqlites(stores: tuple[str, Path]) -> None:
    """``--service``/``--environment`` and the dashboard's filter read the same on PostgreSQL as on
    SQLite, and the window-function sessions statement (the report's fallback) agrees with the report."""
    url, path = stores
    since = NOW - 2 * DAY
    for service, environment in (("shop", None), ("api", "production")):
        filters = {"service": service, "environment": environment}
        assert build_report(url, since, **filters) == build_report(path, since, **filters)
        on_pg = reading(url, lambda db, f=filters: build_dashboard(db, since, now=NOW, **f))
        assert on_pg == reading(path, lambda db, f=filters: build_dashboard(db, since, now=NOW, **f))
    scope = Scope(int(since.timestamp() * 1_000_000))
    by_sql = reading(url, lambda db: sessions_by_sql(db, scope.sql, scope.params, 10))
    assert by_sql == build_report(url, since).sessions and by_sql.sessions > 0


def test_the_cli_reads_a_postgresql_url(stores: tuple[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """``otel-user-tracking report postgresql://...`` prints what it prints for the SQLite file."""
    url, path = stores
    printed = []
    for source in (url, str(path)):
        out = io.StringIO()
        with redirect_stdout(out):
            assert main(["report", source, "--since", "2026-10-01", "--format", "json"]) == 0
        printed.append(json.loads(out.getvalue()))
    assert printed[0] == printed[1] and printed[0]["pageviews"] > 0


def _recorded(db: Any, work: Any) -> list[str]:
    """The SELECT statements ``work(reader)`` issues."""
    issued: list[str] = []

    class Recorder(PostgresReader):
        def execute(self, sql: str, params: Sequence[object] = ()) -> Any:
            if sql.lstrip().upper().startswith(("SELECT", "WITH")):
                issued.append((sql, tuple(params)))  # type: ignore[arg-type]
            return super().execute(sql, params)

    work(Recorder(db.connection))
    return issued  # type: ignore[return-value]


_SCAN = re.compile(
    r"(Index Only Scan|Index Scan|Bitmap Heap Scan)(?: Backward)? (?:using \S+ on (\w+)|on (\w+))"
)


def test_every_report_and_dashboard_query_has_an_index_on_postgresql(stores: tuple[str, Path]) -> None:
    """With sequential and bitmap scans priced out, each query reads the day partitions through an
    index, the pageview sections through index-only scans (their columns are covered)."""
    url, _ = stores
    count(url, "VACUUM ANALYZE events")  # index-only scans need the visibility map
    reader = open_reader(url)
    assert isinstance(reader, PostgresReader)
    try:
        since = NOW - 30 * DAY

        def everything(db: Any) -> None:
            build_dashboard(db, since, now=NOW)
            for kind in ("user", "visitor", "session"):
                journey(db, kind, ("someone",), 0)

        statements = _recorded(reader, everything)
        filled = {name for (name,) in _rows(url, "SELECT DISTINCT tableoid::regclass::text FROM events")}
        reader.execute("SET enable_seqscan = off")  # tiny partitions: any plan costs the same
        reader.execute("SET enable_bitmapscan = off")  # so what an index covers shows as index-only
        assert len(statements) > 20 and filled
        for sql, params in statements:  # type: ignore[misc]
            plan = reader.plan(sql, params)
            assert not any("Seq Scan on events" in step for step in plan), (sql, plan)
            scans = [_SCAN.search(step) for step in plan]
            used = [(match.group(1), match.group(2) or match.group(3)) for match in scans if match]
            assert used or not any("Scan" in step for step in plan), (sql, plan)  # or no partition
            # Empty partitions (days ahead) cost the same through any index: only filled ones count.
            if "'pageview'" in sql and "user_agent" not in sql and "type IN" not in sql:
                assert all(kind == "Index Only Scan" for kind, part in used if part in filled), (sql, plan)
    finally:
        reader.close()


def test_a_new_event_field_becomes_a_column_and_a_newer_store_is_refused(postgres: PostgresServer) -> None:
    """A column missing from an older store is added at the writer's start; a newer version is refused."""
    url = postgres.database()
    write_pg(url, generate(10, seed=2)).close()
    count(url, "ALTER TABLE events DROP COLUMN utm_campaign")
    write_pg(url, generate(10, seed=3)).close()  # as if utm_campaign were new in EventRecord
    assert count(url, "SELECT count(utm_campaign) FROM events") == (0,)
    assert count(url, "SELECT version FROM schema_version") == (SCHEMA_VERSION,)
    count(url, f"UPDATE schema_version SET version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ValueError, match="newer than this otel-user-tracking"):
        PostgreSQLSink(url).check()
    with pytest.raises(SchemaError):
        open_reader(url)


def test_retention_drops_whole_day_partitions(postgres: PostgresServer) -> None:
    """Days wholly older than the retention lose their partition; the others keep every row."""
    url = postgres.database()
    now = datetime.now(timezone.utc)
    made = [
        event._replace(ts_us=int((now - age).timestamp() * 1e6))
        for age, event in zip([100 * DAY, 40 * DAY, 40 * DAY, DAY, timedelta(0)], generate(5, seed=4))
    ]
    sink = PostgreSQLSink(url, retention_days=30, maintenance_interval=0)
    assert sink.send(made) is None
    assert sink.dropped_partitions == 2
    assert count(url, "SELECT count(*) FROM events") == (2,)
    names = {row for (row,) in _rows(url, "SELECT relname FROM pg_class WHERE relname LIKE 'events_p%'")}
    assert partition_name(made[0].ts_us - made[0].ts_us % 86_400_000_000) not in names
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    ahead = {partition_name(int((today + n * DAY).timestamp() * 1e6)) for n in range(3)}
    assert ahead <= names  # created ahead of the writes that need them
    sink.close()


def _rows(url: str, sql: str) -> list[Any]:
    import psycopg

    with closing(psycopg.connect(url, autocommit=True)) as connection:
        return connection.execute(sql).fetchall()


def test_a_dropped_connection_mid_copy_is_retried_and_stored_once(
    postgres: PostgresServer, events: list[AnalyticsEvent]
) -> None:
    """pg_terminate_backend during a COPY: the batch fails retryably and its retry stores it once."""
    import threading

    from otel_user_tracking.sinks import RetryableSinkError

    url = postgres.database()
    sink = write_pg(url, events[:10])
    big = generate(60_000, seed=9)
    started = threading.Event()

    def killer() -> None:
        started.wait(10)
        with closing(postgres.admin()) as admin:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                killed = admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'otel-user-tracking' AND query LIKE 'COPY%'"
                ).fetchall()
                if killed:
                    return
                time.sleep(0.001)

    thread = threading.Thread(target=killer)
    thread.start()
    started.set()
    with pytest.raises(RetryableSinkError):
        sink.send(big)
    thread.join()
    assert sink.send(big) is None
    assert count(url) == (60_010, 60_010)
    sink.close()


def test_errors_of_the_reader_name_the_store_without_the_password(postgres: PostgresServer) -> None:
    """A reader of an unreachable or empty database says which (URL masked)."""
    from otel_user_tracking.store.reader import StoreUnavailable

    with pytest.raises(StoreUnavailable) as raised:
        open_reader(postgres.url("nosuchdb"))
    assert PASSWORD not in str(raised.value) and "***@127.0.0.1" in str(raised.value)
    with pytest.raises(FileNotFoundError):
        open_reader(postgres.database())


def test_a_url_libpq_cannot_parse_is_reported_without_its_parts() -> None:
    """libpq quotes what it cannot parse; the error says only that, the URL masked."""
    from otel_user_tracking.store.reader import StoreUnavailable

    with pytest.raises(StoreUnavailable) as raised:
        open_reader(f"postgresql://otel:{PASSWORD}@127.0.0.1:1/db?nonsense={PASSWORD}")
    assert PASSWORD not in str(raised.value) and "cannot be parsed" in str(raised.value)


def test_the_dashboard_serves_a_postgresql_store_as_it_serves_sqlite(stores: tuple[str, Path]) -> None:
    """``DashboardServer("postgresql://...")`` serves the page the SQLite file gets, numbers alike."""
    from otel_user_tracking.store.dashboard import DashboardServer, PageOptions

    from ._dashboard import request as get
    from ._dashboard import running

    url, path = stores
    pages = []
    for source in (url, path):
        options = PageOptions(since_text="2026-10-01", refresh_seconds=60, live=True)
        with running(DashboardServer(source, port=0, options=options)) as server:
            status, _, body = get(server, "GET", "/")
        assert status == 200 and PASSWORD not in body
        pages.append(re.sub(r"generated [^<]*", "", body))
    assert pages[0] == pages[1]


def test_text_postgresql_cannot_hold_does_not_cost_the_batch(postgres: PostgresServer) -> None:
    """A NUL or a lone surrogate (a hostile request's path) is stored replaced; its batch is stored whole."""
    url = postgres.database()
    events = generate(20, seed=6)
    odd = [events[0]._replace(page="/a\x00b"), events[1]._replace(referrer="https://x/\udcff")]
    sink = write_pg(url, [*odd, *events[2:]])
    assert count(url) == (20, 20) and sink.cleaned_batches == 1
    assert count(url, "SELECT count(*) FROM events WHERE page = '/a\ufffdb'") == (1,)
    sink.close()


def test_the_dashboard_answers_503_while_its_database_is_away(postgres: PostgresServer) -> None:
    """A dashboard whose PostgreSQL store cannot be reached says so (503), and the password stays out."""
    from otel_user_tracking.store.dashboard import DashboardServer, PageOptions

    from ._dashboard import request as get
    from ._dashboard import running

    url = postgres.url("nosuchdb")
    with running(DashboardServer(url, port=0, options=PageOptions(refresh_seconds=60, live=True))) as server:
        status, _, body = get(server, "GET", "/")
    assert status == 503 and "could not be read" in body and PASSWORD not in body
