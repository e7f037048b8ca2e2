"""The PostgreSQL store's faults: a restart under load, an outage, a full disk; nothing lost or doubled."""

from __future__ import annotations

import logging
import os
import pwd
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from otel_user_tracking.analytics.durable import DurablePipeline
from otel_user_tracking.analytics.outbox import Outbox
from otel_user_tracking.analytics.pipeline import SinkPipeline
from otel_user_tracking.analytics.settings import DeliverySettings
from otel_user_tracking.sinks import PostgreSQLSink

from ._postgres import PASSWORD, PostgresServer
from ._small_fs import mounted_tmpfs
from .test_postgres_store import count
from .test_report_plans import generate

FAST = {"flush_at": 200, "flush_interval": 0.05, "initial_backoff": 0.05, "max_backoff": 0.5}


def _feed(pipeline: SinkPipeline, events: list, pieces: int, pause: float, halfway: threading.Event) -> None:
    size = -(-len(events) // pieces)
    for index in range(pieces):
        pipeline.offer(events[index * size : (index + 1) * size])
        if index == pieces // 2:
            halfway.set()
        time.sleep(pause)


def _flushed(pipeline: SinkPipeline, timeout: float = 60.0) -> bool:
    return pipeline.wait_flushed(
        pipeline.request_flush(time.monotonic() + timeout), time.monotonic() + timeout
    )


def _sink_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


def test_a_restart_under_load_stores_every_event_once(
    postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The database restarts while batches flow: every event is stored exactly once, none failed,
    the outage logged once, the password never."""
    url = postgres.database()
    events = generate(20_000, seed=31)
    sink = PostgreSQLSink(url, retention_days=0, connect_timeout=2)
    pipeline = SinkPipeline(sink, DeliverySettings(**FAST, max_retries=100, max_queue_size=100_000))
    halfway = threading.Event()
    feeder = threading.Thread(target=_feed, args=(pipeline, events, 40, 0.02, halfway))
    caplog.set_level(logging.WARNING)
    feeder.start()
    assert halfway.wait(30)
    postgres.restart("fast")
    feeder.join()
    assert _flushed(pipeline)
    stats = pipeline.stats()
    pipeline.shutdown(time.monotonic() + 10)
    assert count(url) == (20_000, 20_000), (stats, sink.failures)
    assert stats.failed == 0 and stats.dropped == 0 and stats.retried > 0
    warnings = _sink_warnings(caplog)
    assert warnings and len(warnings) <= 3, warnings  # once per kind and period, not per retry
    assert PASSWORD not in caplog.text


@pytest.mark.parametrize("outage", [3.0, pytest.param(60.0, marks=pytest.mark.slow)], ids=["3s", "a minute"])
def test_an_outage_keeps_the_events_in_the_outbox_until_the_database_is_back(
    postgres: PostgresServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, outage: float
) -> None:
    """With the outbox on, events accepted while the database is down wait there and arrive once."""
    url = postgres.database()
    with closing(PostgreSQLSink(url)) as first:
        first.check()  # the schema exists; the outage starts after
    events = generate(3000, seed=37)
    sink = PostgreSQLSink(url, retention_days=0, connect_timeout=1)
    outbox = Outbox(tmp_path / "outbox.db")
    pipeline = DurablePipeline(sink, DeliverySettings(**FAST), outbox)
    caplog.set_level(logging.WARNING)
    postgres.stop()
    try:
        pipeline.offer(events[:1500])
        deadline = time.monotonic() + 10
        while outbox.backlog(pipeline.key) < 1500 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert outbox.backlog(pipeline.key) == 1500  # kept on disk while the database is away
        time.sleep(outage)
        pipeline.offer(events[1500:])
    finally:
        postgres.start()
    assert _flushed(pipeline, 60 + outage)
    pipeline.shutdown(time.monotonic() + 10)
    outbox.close()
    assert count(url) == (3000, 3000)
    warnings = _sink_warnings(caplog)
    assert warnings and len(warnings) <= 3, warnings
    assert PASSWORD not in caplog.text


@pytest.fixture
def small_tablespace(postgres: PostgresServer, tmp_path: Path) -> Iterator[str]:
    """A database whose tables live on a 24 MB tmpfs (a tablespace): a disk that fills up."""
    mount = postgres.directory / f"small-{tmp_path.name}"  # a path the server's user can reach
    for directory in mounted_tmpfs(mount, "24m"):
        if postgres.user:
            entry = pwd.getpwnam(postgres.user)
            os.chown(directory, entry.pw_uid, entry.pw_gid)
        name = f"full_{os.getpid()}"
        with closing(postgres.admin()) as admin:
            admin.execute(f"CREATE TABLESPACE {name} LOCATION '{directory}'")
            admin.execute(f"CREATE DATABASE {name} TABLESPACE {name}")
        try:
            yield postgres.url(name)
        finally:
            with closing(postgres.admin()) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                admin.execute(f"DROP TABLESPACE IF EXISTS {name}")


def test_a_full_disk_is_retried_and_the_events_arrive_once_space_is_freed(
    small_tablespace: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The database's disk fills: batches fail retryably (counted, logged once), wait in the outbox,
    and are stored once after space is freed."""
    url = small_tablespace
    with closing(PostgreSQLSink(url)) as first:
        first.check()
    import psycopg

    with closing(psycopg.connect(url, autocommit=True)) as db:
        db.execute("CREATE TABLE filler (junk text)")
        with pytest.raises(psycopg.errors.DiskFull):
            for _ in range(1000):
                db.execute(
                    "INSERT INTO filler SELECT repeat(md5(random()::text), 64) FROM generate_series(1, 2000)"
                )
    events = generate(2000, seed=41)
    sink = PostgreSQLSink(url, retention_days=0)
    outbox = Outbox(tmp_path / "outbox.db")
    pipeline = DurablePipeline(sink, DeliverySettings(**FAST), outbox)
    caplog.set_level(logging.WARNING)
    pipeline.offer(events)
    deadline = time.monotonic() + 20
    while pipeline.stats().retried < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pipeline.stats().retried >= 3
    assert outbox.backlog(pipeline.key) == 2000
    # A write meets "No space left" (SQLSTATE 53100); a new connection may first fail to write its
    # relation cache file in the full database directory ("could not write init file").
    words = ("53100", "space", "could not write")
    assert any(word in message for message in _sink_warnings(caplog) for word in words)
    with closing(psycopg.connect(url, autocommit=True)) as db:
        db.execute("DROP TABLE filler")
    assert _flushed(pipeline)
    pipeline.shutdown(time.monotonic() + 10)
    outbox.close()
    assert count(url) == (2000, 2000)
    subprocess.run(["sync"], check=False)
