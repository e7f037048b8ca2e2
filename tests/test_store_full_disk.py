"""A nearly full disk: the store keeps what fits, counts what does not, and goes on once space is freed.

The disk is a small tmpfs mounted for the test (root only); elsewhere the test is skipped.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from otel_user_tracking.analytics.events import AnalyticsEvent
from otel_user_tracking.analytics.pipeline import SinkPipeline
from otel_user_tracking.analytics.settings import DeliverySettings
from otel_user_tracking.sinks import SQLiteSink

DISK_BYTES = 4 * 1024 * 1024
ROOM_BYTES = 256 * 1024  # left free by the filler: a few hundred events, not a batch of 1 000


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a size-capped tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a size-capped tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def _events(start: int, count: int) -> list[AnalyticsEvent]:
    now = datetime.now(timezone.utc)
    return [
        AnalyticsEvent(
            "pageview", f"{n:032x}", f"{n:016x}", timestamp=now, path=f"/p/{n}", user_agent="u" * 900
        )
        for n in range(start, start + count)
    ]


def _fill(disk: Path) -> Path:
    """Take all the disk's free space but ``ROOM_BYTES``."""
    filler = disk / "filler"
    stats = os.statvfs(disk)
    filler.write_bytes(b"\0" * (stats.f_bavail * stats.f_frsize - ROOM_BYTES))
    return filler


def _flush(pipeline: SinkPipeline) -> None:
    deadline = time.monotonic() + 30
    assert pipeline.wait_flushed(pipeline.request_flush(deadline), deadline)


def _rows(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])


def test_a_batch_too_big_for_the_disk_is_split_and_later_events_are_stored_once_space_is_freed(
    small_disk: Path,
) -> None:
    """Room for a few hundred of 1 000 events: those are stored, the rest failed; after freeing, all go."""
    path = small_disk / "a.db"
    sink = SQLiteSink(path)
    sink.check()
    pipeline = SinkPipeline(sink, DeliverySettings(max_retries=0, flush_interval=60))
    filler = _fill(small_disk)
    try:
        pipeline.offer(_events(0, 1000))
        _flush(pipeline)
        first = pipeline.stats()
        assert first.sent > 0 and first.failed > 0 and first.sent + first.failed == 1000, first
        assert _rows(path) == first.sent
        filler.unlink()
        pipeline.offer(_events(1000, 500))
        _flush(pipeline)
        later = pipeline.stats()
        assert later.sent == first.sent + 500 and later.failed == first.failed, later
        assert _rows(path) == later.sent
    finally:
        pipeline.shutdown(time.monotonic() + 10)
