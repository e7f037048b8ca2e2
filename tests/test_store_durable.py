"""What a crash can take from the store: the in-flight ledger, and the durable mode that shortens the wait."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from otel_user_tracking.analytics.durable import PERSIST_WAIT
from otel_user_tracking.analytics.events import AnalyticsEvent
from otel_user_tracking.analytics.pipeline import SinkPipeline
from otel_user_tracking.analytics.settings import DeliverySettings
from otel_user_tracking.sinks import SQLiteSink, sink_from_url
from otel_user_tracking.store.sqlite.inflight import ledger_directory
from otel_user_tracking.store.sqlite.sink import DURABLE_WAIT

SLOW = DeliverySettings(flush_interval=60)


def _events(start: int, count: int) -> list[AnalyticsEvent]:
    now = datetime.now(timezone.utc)
    return [
        AnalyticsEvent("pageview", f"{n:032x}", f"{n:016x}", timestamp=now, path=f"/p/{n}")
        for n in range(start, start + count)
    ]


def _rows(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])


def _killed_child_accepting(path: Path, stored: int, waiting: int) -> int:
    """Fork a writer that stores ``stored`` events, queues ``waiting`` more, and is SIGKILLed."""
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            sink = SQLiteSink(path)
            pipeline = SinkPipeline(sink, SLOW)
            pipeline.offer(_events(0, stored))
            deadline = time.monotonic() + 10
            pipeline.wait_flushed(pipeline.request_flush(deadline), deadline)
            pipeline.offer(_events(stored, waiting))
        finally:
            os.kill(os.getpid(), signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    return pid


def test_the_next_start_counts_and_logs_what_a_killed_writer_held(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A writer SIGKILLed with 30 events queued: the next sink to open the store reports exactly 30, once."""
    path = tmp_path / "a.db"
    pid = _killed_child_accepting(path, stored=70, waiting=30)
    assert _rows(path) == 70
    sink = SQLiteSink(path)
    sink.check()
    again = SQLiteSink(path)
    again.check()
    sink.close()
    again.close()
    assert (sink.lost, again.lost) == (30, 0)
    [line] = [record.getMessage() for record in caplog.records if "were lost" in record.getMessage()]
    assert f"30 events were lost: process {pid} ended without shutting down" in line
    assert list(ledger_directory(path).iterdir()) == []


def test_a_writer_that_shut_down_cleanly_leaves_nothing_to_report(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Stored events, a clean shutdown: no ledger left, no loss at the next start."""
    path = tmp_path / "a.db"
    pipeline = SinkPipeline(SQLiteSink(path), SLOW)
    pipeline.offer(_events(0, 50))
    assert pipeline.shutdown(time.monotonic() + 10)
    assert list(ledger_directory(path).iterdir()) == []
    sink = SQLiteSink(path)
    sink.check()
    sink.close()
    assert sink.lost == 0 and _rows(path) == 50 and not caplog.records


def test_a_durable_store_commits_within_the_outbox_wait_not_the_flush_interval(tmp_path: Path) -> None:
    """``durable=True``: a lone event is stored without a flush although flush_interval is a minute."""
    path = tmp_path / "a.db"
    sink = SQLiteSink(path, durable=True)
    sink.check()
    pipeline = SinkPipeline(sink, SLOW)
    try:
        pipeline.offer(_events(0, 1))
        deadline = time.monotonic() + 10
        while _rows(path) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)  # nothing to wait on: the commit is what is being waited for
        assert _rows(path) == 1
    finally:
        pipeline.shutdown(time.monotonic() + 10)


def test_the_outbox_variable_makes_the_store_durable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``OTEL_PYTHON_USER_TRACKING_OUTBOX`` set: a store from a URL waits at most the outbox's 0.2 s."""
    monkeypatch.setenv("OTEL_PYTHON_USER_TRACKING_OUTBOX", f"sqlite:///{tmp_path / 'outbox.db'}")
    durable = sink_from_url(f"sqlite:///{tmp_path / 'a.db'}")
    monkeypatch.delenv("OTEL_PYTHON_USER_TRACKING_OUTBOX")
    plain = sink_from_url(f"sqlite:///{tmp_path / 'b.db'}")
    durable.close()
    plain.close()
    assert (getattr(durable, "max_wait", None), getattr(plain, "max_wait", None)) == (DURABLE_WAIT, None)
    assert DURABLE_WAIT == PERSIST_WAIT
