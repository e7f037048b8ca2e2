"""The embedded store left running: retention, the size cap, start-up checks, files that change under it."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import otel_user_tracking as out
from otel_user_tracking.analytics.events import AnalyticsEvent
from otel_user_tracking.sinks import sink_from_url
from otel_user_tracking.store.reader import SQLiteReader
from otel_user_tracking.store.sqlite.schema import SCHEMA_VERSION, connect


def _event(days_ago: float, n: int, *, agent: str = "Mozilla/5.0") -> AnalyticsEvent:
    when = datetime.now(timezone.utc) - timedelta(days=days_ago)
    return AnalyticsEvent(
        type="pageview",
        trace_id=f"{n:032x}",
        span_id=f"{n:016x}",
        timestamp=when,
        path=f"/p/{n}",
        user_agent=agent,
    )


def _count(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])


@pytest.fixture
def closing() -> Iterator[list[out.sinks.SQLiteSink]]:
    sinks: list[out.sinks.SQLiteSink] = []
    yield sinks
    for sink in sinks:
        sink.close()


def test_retention_deletes_events_older_than_the_window_and_counts_them(
    tmp_path: Path, closing: list[out.sinks.SQLiteSink]
) -> None:
    """Events older than ``retention_days`` go after a batch; recent ones stay; deletions are counted."""
    sink = out.sinks.SQLiteSink(tmp_path / "a.db", retention_days=30)
    closing.append(sink)
    sink.send([_event(40, n) for n in range(2500)] + [_event(1, n) for n in range(2500, 2600)])
    assert _count(tmp_path / "a.db") == 100
    assert sink.deleted == 2500


def test_retention_zero_keeps_everything(tmp_path: Path, closing: list[out.sinks.SQLiteSink]) -> None:
    """``retention_days=0`` deletes nothing, however old."""
    sink = out.sinks.SQLiteSink(tmp_path / "a.db", retention_days=0)
    closing.append(sink)
    sink.send([_event(4000, n) for n in range(50)])
    assert _count(tmp_path / "a.db") == 50 and sink.deleted == 0


def test_the_size_cap_stops_the_file_growing_in_steady_state(
    tmp_path: Path, closing: list[out.sinks.SQLiteSink]
) -> None:
    """Past ``max_store_mb`` the oldest events go and freed pages are reused: the file stops growing."""
    path = tmp_path / "a.db"
    sink = out.sinks.SQLiteSink(path, retention_days=0, max_store_mb=1, maintenance_interval=0)
    closing.append(sink)
    agent = "x" * 1000  # ~1.3 KB a row: 1 MB is about 800 events
    sizes = []
    for batch in range(12):
        sink.send([_event(0.001, batch * 500 + n, agent=agent) for n in range(500)])
        sizes.append(path.stat().st_size + Path(f"{path}-wal").stat().st_size)
    assert sink.deleted > 4000
    assert _count(path) < 6000 - 4000
    assert max(sizes[6:]) <= max(sizes[:6]) * 1.1, sizes  # steady state: no growth past the first rounds


def test_a_new_store_has_16k_pages_and_an_existing_one_keeps_its_own(tmp_path: Path) -> None:
    """New stores get 16 KiB pages (fewer WAL pages per transaction); a store made with 4 KiB
    pages keeps them and still migrates. Either way the WAL is checkpointed at about 4 MiB."""
    with contextlib.closing(connect(tmp_path / "new.db")) as db:
        assert db.execute("PRAGMA page_size").fetchone()[0] == 16_384
        assert db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 256
    old = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(old)) as db:
        db.execute("PRAGMA page_size=4096")
        db.execute("CREATE TABLE unrelated (x)")
        db.commit()
    with contextlib.closing(connect(old)) as db:
        assert db.execute("PRAGMA page_size").fetchone()[0] == 4096
        assert db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1024
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 0


def test_report_queries_use_indexes_not_full_scans(tmp_path: Path) -> None:
    """Every query of the report is served by an index of the store (checked by EXPLAIN QUERY PLAN)."""
    from otel_user_tracking.store import report
    from otel_user_tracking.store.scope import Scope

    path = tmp_path / "a.db"
    with contextlib.closing(connect(path)) as db:
        plans: list[str] = []
        original = db.execute

        class Recorder(SQLiteReader):
            def execute(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
                if sql.lstrip().upper().startswith("SELECT"):
                    plans.extend(row[3] for row in original(f"EXPLAIN QUERY PLAN {sql}", params).fetchall())
                return original(sql, params)

        report._query(Recorder(db), Scope(0, service="shop"), 10, datetime.now(timezone.utc))
    assert plans
    scans = [plan for plan in plans if plan.startswith("SCAN events") and "INDEX" not in plan]
    assert scans == [], plans


def _under_a_file(path: Path) -> Path:
    (path.parent / "file").write_text("x")
    return path.parent / "file" / "a.db"


def _corrupt(path: Path) -> Path:
    path.write_bytes(b"this is not sqlite" * 100)
    return path


@pytest.mark.parametrize(
    ("prepare", "words"),
    [(_under_a_file, "is a file, not a directory"), (_corrupt, "not an otel-user-tracking store")],
    ids=["parent-is-a-file", "corrupt-file"],
)
def test_store_problems_stop_the_start_with_the_fix(
    tmp_path: Path, prepare: Callable[[Path], Path], words: str
) -> None:
    """A store that cannot work is refused when the sink is configured, not at the first write."""
    path = prepare(tmp_path / "a.db")
    with pytest.raises(ValueError, match=words):
        sink_from_url(f"sqlite:///{path}")


def test_a_store_from_a_newer_version_is_refused_at_start(tmp_path: Path) -> None:
    """A store whose schema is newer than this package understands stops the start, saying so."""
    path = tmp_path / "a.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ValueError, match="newer than this otel-user-tracking understands"):
        sink_from_url(f"sqlite:///{path}")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through read-only permissions")
def test_a_read_only_directory_stops_the_start(tmp_path: Path) -> None:
    """A store in a directory nobody may write to is refused at start-up."""
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(ValueError, match="analytics store"):
            sink_from_url(f"sqlite:///{tmp_path / 'a.db'}")
    finally:
        tmp_path.chmod(0o700)


def test_a_deleted_store_is_recreated_not_written_into_the_void(
    tmp_path: Path, closing: list[out.sinks.SQLiteSink]
) -> None:
    """Deleting the store's files while it runs: the next batch opens a new file and lands there."""
    path = tmp_path / "a.db"
    sink = out.sinks.SQLiteSink(path)
    closing.append(sink)
    sink.send([_event(0, 1)])
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    sink.send([_event(0, 2), _event(0, 3)])
    assert _count(path) == 2


def test_a_full_disk_is_reported_as_a_full_disk(tmp_path: Path, closing: list[out.sinks.SQLiteSink]) -> None:
    """When the store cannot grow (SQLITE_FULL) the error says the disk is full, not a failed rollback."""
    path = tmp_path / "a.db"
    sink = out.sinks.SQLiteSink(path)
    closing.append(sink)
    sink.send([_event(0, 1)])
    with contextlib.closing(sqlite3.connect(path)) as db:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
    # A page limit is how SQLite itself reports a full disk: the same SQLITE_FULL error.
    connection = sink._connect()
    connection.execute(f"PRAGMA max_page_count = {pages + 1}")
    result = sink.send([_event(0, n, agent="y" * 5000) for n in range(10, 200)])
    assert result is not None and "disk is full" in result.reason and result.kind == "full"
    assert "rollback" not in result.reason.lower()
    stored = _count(path) - 1
    assert stored > 0 and stored + len(result.retry) == 190  # what fitted is stored, the rest comes back
    with pytest.raises(out.sinks.RetryableSinkError, match="disk is full") as info:
        sink.send(result.retry)  # nothing fits any more: the batch goes back whole
    assert "rollback" not in str(info.value).lower()
    connection.execute("PRAGMA max_page_count = 1073741823")
    sink.send([_event(0, 500)])  # writing resumes when the fault clears
    assert _count(path) == stored + 2


def test_a_forked_child_writes_with_its_own_connection_and_lock(tmp_path: Path) -> None:
    """A child forked while the parent's sink held its lock still delivers: lock and connection re-made."""
    path = tmp_path / "a.db"
    sink = out.sinks.SQLiteSink(path)
    sink.send([_event(0, 1)])
    with sink._lock:  # the parent is in the middle of a send when the fork happens
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                sink.send([_event(0, 2)])
                code = 0
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    sink.close()
    assert os.waitstatus_to_exitcode(status) == 0
    assert _count(path) == 2


def _truncate(path: Path) -> None:
    with open(path, "r+b") as file:
        file.truncate(0)


def _replace(path: Path) -> None:
    other = path.with_name("other.db")
    with contextlib.closing(sqlite3.connect(other)) as db:
        db.execute("CREATE TABLE unrelated (x)")
    os.replace(other, path)


@pytest.mark.parametrize(("change", "words"), [(_truncate, "was truncated"), (_replace, "was replaced")])
def test_a_store_truncated_or_replaced_while_running_is_recreated_counted_and_logged(
    tmp_path: Path,
    closing: list[out.sinks.SQLiteSink],
    caplog: pytest.LogCaptureFixture,
    change: Callable[[Path], None],
    words: str,
) -> None:
    """Later events land in a readable store; the earlier ones are counted as lost and logged once."""
    path = tmp_path / "a.db"
    sink = out.sinks.SQLiteSink(path)
    closing.append(sink)
    sink.send([_event(0, n) for n in range(100)])
    sink._connect().execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the 100 are in the file itself now
    change(path)
    sink.send([_event(0, n) for n in range(100, 250)])
    sink.send([_event(0, n) for n in range(250, 400)])
    assert _count(path) == 300
    assert sink.lost == 100
    [record] = [record for record in caplog.records if "while the app ran" in record.getMessage()]
    assert words in record.getMessage() and "100 events" in record.getMessage()
