"""The visitor-id salt: one per UTC day for every process of a store, gone once the day is over."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

import otel_user_tracking as out
from otel_user_tracking.analytics.processor import AnalyticsSpanProcessor
from otel_user_tracking.request.visitor import VisitorIdentifier
from otel_user_tracking.salts import RandomSalts, SecretSalts, StoredSalts
from otel_user_tracking.salts import current as current_salts
from otel_user_tracking.sinks import InMemorySink, SQLiteSink
from otel_user_tracking.store.sqlite.salts import SQLiteDaySalts

DAY = 86_400.0
UA = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"
ADDRESS = "198.51.100.7"
SECRET = "a-visitor-secret-of-enough-bytes"
MIDNIGHT = 20_000 * DAY


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingStore:
    """A ``DaySaltStore`` in memory that counts each salt it hands out per day."""

    def __init__(self, available: bool = True) -> None:
        self.rows: dict[int, bytes] = {}
        self.available = available
        self.calls = 0

    def salts(self, days: Sequence[int]) -> Mapping[int, bytes]:
        self.calls += 1
        if not self.available:
            raise OSError("the store is away")
        for day in days:
            self.rows.setdefault(day, bytes([day % 256]) * 32 + str(self.calls).encode())
        return {day: self.rows[day] for day in days}

    def forget_before(self, day: int) -> bool:
        for old in [old for old in self.rows if old < day]:
            del self.rows[old]
        return True

    def close(self) -> None:
        return None


def _ids_under_a_stepping_clock(
    identifier: VisitorIdentifier, clock: Clock, refresh: object = None
) -> list[str]:
    """The ids of one visitor as the clock crosses a midnight forwards, back, forwards, back,
    then reaches the next midnight and steps back across it."""
    before, after = MIDNIGHT - 30, MIDNIGHT + 30
    ids = []
    for now in (before, after, before, after, before - 600, after + 600, MIDNIGHT + DAY + 5, after):
        clock.now = now
        if callable(refresh):
            refresh()
        visitor = identifier.visitor_id(ADDRESS, UA)
        assert visitor is not None
        ids.append(visitor)
    return ids


def _one_id_per_day_reached(ids: list[str]) -> bool:
    """Three days reached, three ids, each used for one stretch: never back to an earlier one."""
    return len(set(ids)) == 3 and len(set(ids[1:6])) == 1 and ids[6] == ids[7] != ids[1] != ids[0]


def test_a_clock_stepping_back_across_midnight_never_mints_a_second_salt_for_a_day() -> None:
    """Random salts under a clock crossing midnight back and forth: the ids stay on the latest day reached."""
    clock = Clock(0)
    assert _one_id_per_day_reached(_ids_under_a_stepping_clock(VisitorIdentifier(clock=clock), clock))


def test_a_secret_gives_every_process_the_same_salt_and_each_day_another() -> None:
    """One secret, two processes: one id; the next day another; a stepping clock mints nothing."""
    clock = Clock(MIDNIGHT + 60)
    first = VisitorIdentifier(clock=clock, secret=SECRET).visitor_id(ADDRESS, UA)
    assert VisitorIdentifier(clock=clock, secret=SECRET.encode()).visitor_id(ADDRESS, UA) == first
    assert VisitorIdentifier(clock=clock).visitor_id(ADDRESS, UA) != first  # no secret: random
    assert VisitorIdentifier(clock=clock, secret=SECRET + "x").visitor_id(ADDRESS, UA) != first
    clock.now += DAY
    assert VisitorIdentifier(clock=clock, secret=SECRET).visitor_id(ADDRESS, UA) != first
    assert _one_id_per_day_reached(
        _ids_under_a_stepping_clock(VisitorIdentifier(clock=clock, secret=SECRET), clock)
    )


def test_stored_salts_under_a_stepping_clock_take_one_salt_per_day_from_the_store() -> None:
    """Refreshes under a clock crossing midnight back and forth: one salt per day, past days deleted."""
    store, clock = CountingStore(), Clock(0)
    source = StoredSalts(store, clock=clock)
    current_salts.source = source
    try:
        ids = _ids_under_a_stepping_clock(VisitorIdentifier(clock=clock), clock, refresh=source.refresh)
    finally:
        current_salts.reset()
    assert _one_id_per_day_reached(ids)
    first_day = int(MIDNIGHT // DAY) - 1
    assert sorted(store.rows) == [first_day + 2, first_day + 3]  # today and tomorrow; older ones deleted


def test_before_the_store_answers_requests_get_no_visitor_id_and_then_the_stores_one() -> None:
    """A store that does not answer: no id (never a process-local one), counted; then the store's."""
    store, clock = CountingStore(available=False), Clock(MIDNIGHT + 60)
    source = StoredSalts(store, clock=clock)
    current_salts.source = source
    try:
        identifier = VisitorIdentifier(clock=clock)
        with pytest.raises(OSError):
            source.refresh()
        assert identifier.visitor_id(ADDRESS, UA) is None and source.missing == 1
        store.available = True
        source.refresh()
        visitor = identifier.visitor_id(ADDRESS, UA)
    finally:
        current_salts.reset()
    assert visitor is not None and len(visitor) == 16


def test_two_processes_and_a_restart_of_one_store_share_the_days_salt(tmp_path: Path) -> None:
    """Eight writers racing for a new day's row (INSERT OR IGNORE) and a later one all get the same salts."""
    path = tmp_path / "analytics.db"
    SQLiteSink(path).check()
    days = [20_000, 20_001]
    results: list[Mapping[int, bytes]] = []
    barrier = threading.Barrier(8)

    def writer() -> None:
        barrier.wait()
        results.append(SQLiteDaySalts(path).salts(days))

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.append(SQLiteDaySalts(path).salts(days))  # a restart the same day
    assert len(results) == 9 and all(result == results[0] for result in results)
    assert results[0][20_000] != results[0][20_001]


def test_yesterdays_salt_is_gone_from_the_store_file_after_rotation(tmp_path: Path) -> None:
    """After midnight's refresh, yesterday's salt bytes are in neither the store file nor its WAL."""
    path = tmp_path / "analytics.db"
    clock = Clock(MIDNIGHT - 60)
    source = StoredSalts(SQLiteDaySalts(path), clock=clock)
    source.refresh()
    yesterday = source.salt(int(clock.now // DAY))
    assert yesterday is not None
    assert _in_files(path, yesterday)  # the scan finds a salt that is there
    clock.now += 120  # past midnight
    source.refresh()
    today = source.salt(int(clock.now // DAY))
    assert today is not None and today != yesterday
    assert not _in_files(path, yesterday)
    assert _in_files(path, today)
    with sqlite3.connect(path) as db:
        days = [day for (day,) in db.execute("SELECT day FROM visitor_salts ORDER BY day")]
    assert days == [int(clock.now // DAY), int(clock.now // DAY) + 1]


def _in_files(path: Path, needle: bytes) -> bool:
    return any(
        needle in candidate.read_bytes()
        for candidate in (path, path.with_name(path.name + "-wal"))
        if candidate.exists()
    )


def test_a_processor_with_the_store_installs_its_salts_and_removes_them_at_shutdown(tmp_path: Path) -> None:
    """The processor's store keeps the salts while it runs (today's known at once); then random again."""
    processor = AnalyticsSpanProcessor(sinks=[SQLiteSink(tmp_path / "a.db")])
    try:
        assert isinstance(current_salts.source, StoredSalts) and processor.salts is current_salts.source
        assert VisitorIdentifier().visitor_id(ADDRESS, UA) is not None
    finally:
        processor.shutdown()
    assert isinstance(current_salts.source, RandomSalts)


def test_without_a_store_or_a_secret_the_log_says_once_that_visitors_are_per_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No sink keeps salts and no secret: one warning naming the variable; with a secret, none."""
    with caplog.at_level(logging.WARNING, logger="otel_user_tracking.salts.current"):
        for _ in range(2):
            AnalyticsSpanProcessor(sinks=[InMemorySink()]).shutdown()
    said = [record for record in caplog.records if "per process" in record.getMessage()]
    assert len(said) == 1 and "OTEL_PYTHON_USER_TRACKING_VISITOR_SECRET" in said[0].getMessage()
    current_salts.reset()
    caplog.clear()
    out.configure(visitor_secret=SECRET)
    with caplog.at_level(logging.WARNING, logger="otel_user_tracking.salts.current"):
        AnalyticsSpanProcessor(sinks=[InMemorySink()]).shutdown()
    assert not caplog.records


@pytest.mark.parametrize("secret", ["", "short", "x" * 32])
def test_a_weak_visitor_secret_stops_the_start_naming_the_variable(secret: str) -> None:
    """A blank, short or one-character secret is refused with the variable's name and how to make one."""
    with pytest.raises(ValueError, match=r"OTEL_PYTHON_USER_TRACKING_VISITOR_SECRET.*secrets\.token_urlsafe"):
        out.Config(visitor_secret=secret)


def test_the_visitor_secret_never_shows_in_the_configs_repr() -> None:
    """``repr(Config)`` leaves the secret out."""
    assert SECRET not in repr(out.Config(visitor_secret=SECRET))


def test_stored_salts_is_the_salt_source_protocol() -> None:
    """Each source satisfies the ``SaltSource`` protocol the request path calls."""
    from otel_user_tracking.salts import SaltSource

    assert all(
        isinstance(source, SaltSource)
        for source in (RandomSalts(), SecretSalts(SECRET.encode()), StoredSalts(CountingStore()))
    )
