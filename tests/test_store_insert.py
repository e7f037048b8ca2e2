"""The store's insert: whatever statements it uses, the rows are the events, each stored once."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from otel_user_tracking.analytics.events import FIELDS, AnalyticsEvent
from otel_user_tracking.sinks import SQLiteSink
from otel_user_tracking.store.sqlite import schema as store
from otel_user_tracking.store.sqlite.schema import CHUNK, INSERT, connect, insert_events

OPTIONAL = [name for name, default in AnalyticsEvent._field_defaults.items() if default is None]
VALUES: dict[str, list[object]] = {
    "status_code": [200, 404, 500],
    "duration_ms": [0.0, 1.25, 12.5, 1e-3],
}


def _events(count: int, seed: int, fill: float) -> list[AnalyticsEvent]:
    """Events whose optional fields are each filled with probability ``fill``: column sets
    that vary from row to row and chunk to chunk, as well as all-empty ones."""
    rng = random.Random(seed)
    events = []
    for index in range(count):
        fields = {
            name: rng.choice(VALUES.get(name, [f"{name}-{index}", "", "ü ✓ \x00 x"]))
            for name in OPTIONAL
            if rng.random() < fill
        }
        kind = rng.choice(["pageview", "error", "custom"])
        events.append(
            AnalyticsEvent(kind, f"{index:032x}", f"{index:016x}", event_id=f"id-{seed}-{index}", **fields)  # type: ignore[arg-type]
        )
    return events


@pytest.fixture
def open_store() -> Iterator[Callable[[Path], sqlite3.Connection]]:
    """``connect`` for the test's stores, each closed at the end of the test."""
    opened: list[sqlite3.Connection] = []

    def open_one(path: Path) -> sqlite3.Connection:
        opened.append(connect(path))
        return opened[-1]

    yield open_one
    for connection in opened:
        connection.close()


def _rows(connection: sqlite3.Connection) -> list[tuple[object, ...]]:
    columns = ", ".join(store.COLUMNS)
    return list(connection.execute(f"SELECT {columns}, typeof(status_code), typeof(duration_ms) FROM events"))


@pytest.mark.parametrize("fill", [0.0, 0.1, 0.5, 1.0])
def test_rows_are_the_events_for_every_batch_size(
    tmp_path: Path, fill: float, open_store: Callable[[Path], sqlite3.Connection]
) -> None:
    """Against one plain ``INSERT`` per event: same rows, same order, same types, NULL where
    the event has None, for batches that are whole chunks, tails of every length, and one row."""
    events = _events(3 * CHUNK + CHUNK - 1, seed=int(fill * 10), fill=fill)
    reference = open_store(tmp_path / "reference.db")
    reference.executemany(INSERT, events)
    chunked = open_store(tmp_path / "chunked.db")
    position = 0
    for size in (1, CHUNK, CHUNK - 1, 2 * CHUNK + 3, 5):
        insert_events(chunked, events[position : position + size])
        position += size
    insert_events(chunked, events[position:])
    assert _rows(chunked) == _rows(reference)
    assert len(_rows(chunked)) == len(events)


def test_a_resent_batch_is_ignored_whatever_its_columns(
    tmp_path: Path, open_store: Callable[[Path], sqlite3.Connection]
) -> None:
    """Idempotent: the same events again (in other chunks, so other statements) add nothing."""
    events = _events(2 * CHUNK + 7, seed=3, fill=0.3)
    connection = open_store(tmp_path / "store.db")
    insert_events(connection, events)
    insert_events(connection, events[5:])
    insert_events(connection, list(reversed(events)))
    assert connection.execute("SELECT COUNT(*) FROM events").fetchone()[0] == len(events)


def test_past_the_shape_limit_every_column_is_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_store: Callable[[Path], sqlite3.Connection]
) -> None:
    """Events whose column sets vary without end cost no more statements than ``MAX_SHAPES``
    (plus one per chunk length binding every column), and are stored all the same."""
    monkeypatch.setattr(store, "_shapes", {})
    monkeypatch.setattr(store, "MAX_SHAPES", 3)
    events = _events(6 * CHUNK, seed=11, fill=0.5)
    reference = open_store(tmp_path / "reference.db")
    reference.executemany(INSERT, events)
    connection = open_store(tmp_path / "store.db")
    for start in range(0, len(events), 3):
        insert_events(connection, events[start : start + 3])
    assert _rows(connection) == _rows(reference)
    every_column = tuple(range(len(FIELDS)))
    assert len([key for key in store._shapes if key[0] != every_column]) <= 3


def test_the_sink_stores_a_batch_as_the_events(
    tmp_path: Path, open_store: Callable[[Path], sqlite3.Connection]
) -> None:
    """Through ``SQLiteSink.send`` (the pipeline's path): one row per event, as inserted alone."""
    events = _events(1000, seed=5, fill=0.4)
    sink = SQLiteSink(tmp_path / "store.db")
    sink.send(events)
    sink.close()
    reference = open_store(tmp_path / "reference.db")
    reference.executemany(INSERT, events)
    assert _rows(open_store(tmp_path / "store.db")) == _rows(reference)
