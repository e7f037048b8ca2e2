"""The outbox's own faults: a locked or full file, leases held elsewhere (in other PID namespaces
too), a crashing sender, and delivered rows that must not stay readable in the file."""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from opentelemetry.sdk.trace import TracerProvider

import otel_user_tracking as out
from otel_user_tracking.analytics.durable import DurablePipeline
from otel_user_tracking.analytics.events import AnalyticsEvent
from otel_user_tracking.analytics.outbox import Outbox
from otel_user_tracking.analytics.settings import DeliverySettings

from ._helper_process import helper_process, holding_lock
from ._sinks import ScriptedSink, end_request_spans, retry
from ._small_fs import fill, mounted_tmpfs

FAST = {"initial_backoff": 0.01, "max_backoff": 0.05, "flush_interval": 0.05}
HOLD_LEASES = """
import sqlite3, sys
from otel_user_tracking.analytics.outbox import Outbox
with sqlite3.connect(sys.argv[1]) as db:
    (key,) = db.execute("SELECT DISTINCT sink FROM outbox").fetchone()
print(len(Outbox(sys.argv[1]).lease(key, 10_000)), flush=True)
sys.stdin.readline()
"""


def _events(count: int, marker: str = "p") -> list[AnalyticsEvent]:
    return [
        AnalyticsEvent(type="pageview", trace_id="ab" * 16, span_id="cd" * 8, path=f"/{marker}/{n}")
        for n in range(count)
    ]


def _remote(**options: Any) -> ScriptedSink:
    sink = ScriptedSink(name="remote", **options)
    sink.remote = True
    return sink


def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a counter another thread moves (no event is signalled for outbox errors)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def _flush(pipeline: DurablePipeline, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    return pipeline.wait_flushed(pipeline.request_flush(deadline), deadline)


def _rows(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])


@pytest.fixture
def pipelines() -> Iterator[list[DurablePipeline]]:
    made: list[DurablePipeline] = []
    yield made
    for pipeline in made:
        pipeline.shutdown(time.monotonic() + 0.5)
        pipeline.outbox.close()


def _pipeline(made: list[DurablePipeline], sink: ScriptedSink, path: Path, **options: Any) -> DurablePipeline:
    outbox = Outbox(path, busy_timeout=0.05)
    pipeline = DurablePipeline(sink, DeliverySettings(**{**FAST, **options}), outbox)
    made.append(pipeline)
    return pipeline


def test_the_sender_outlives_an_outbox_another_process_holds_locked(
    tmp_path: Path, pipelines: list[DurablePipeline], caplog: pytest.LogCaptureFixture
) -> None:
    """50 events wait (backend down); another process holds BEGIN IMMEDIATE past the busy timeout
    while 50 more arrive and the backend returns: the errors are counted and logged a few times,
    and once the lock goes all 100 are delivered, each once."""
    caplog.set_level(logging.WARNING, logger="otel_user_tracking")
    down = threading.Event()
    down.set()
    sink = _remote(answer=lambda batch: retry() if down.is_set() else None)
    path = tmp_path / "outbox.db"
    pipeline = _pipeline(pipelines, sink, path)
    pipeline.offer(_events(50))
    assert not _flush(pipeline, 0.3) and _rows(path) == 50
    with holding_lock(str(path)) as (_, ready):
        assert ready == "locked"
        pipeline.offer(_events(50, "later"))
        _until(lambda: pipeline.stats().outbox_errors >= 3)
        down.clear()
        assert pipeline.stats().queued == 100  # none lost, none counted elsewhere
    assert _flush(pipeline, 10)
    stats = pipeline.stats()
    assert (stats.sent, stats.queued, stats.dropped, stats.failed) == (100, 0, 0, 0), stats
    assert len({event.event_id for event in sink.delivered}) == len(sink.delivered) == 100
    locked = [r for r in caplog.records if "database is locked" in r.getMessage()]
    assert 1 <= len(locked) <= 2 < stats.outbox_errors  # logged once per period, counted each time


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    yield from mounted_tmpfs(tmp_path / "fs")


def test_the_sender_outlives_a_full_disk_and_stores_what_waited_once_it_is_freed(
    small_fs: Path, pipelines: list[DurablePipeline]
) -> None:
    """With the outbox's disk full, new events wait in memory and the errors are counted; once
    space is freed they are stored and all delivered, none dropped."""
    sink = _remote()
    pipeline = _pipeline(pipelines, sink, small_fs / "outbox.db")
    pipeline.offer(_events(20))
    assert _flush(pipeline, 5)
    filler = fill(small_fs)
    try:
        pipeline.offer(_events(300, "full"))
        _until(lambda: pipeline.stats().outbox_errors >= 2)
        assert pipeline.stats().queued == 300 and pipeline.stats().dropped == 0
    finally:
        filler.unlink()
    assert _flush(pipeline, 10)
    stats = pipeline.stats()
    assert (stats.sent, stats.dropped, stats.queued) == (320, 0, 0), stats
    assert len({event.event_id for event in sink.delivered}) == 320


@pytest.mark.parametrize("durable", [False, True])
def test_a_sender_that_crashes_is_restarted_and_counted(durable: bool, tmp_path: Path) -> None:
    """A sink that breaks the contract (send returns 42) crashes the sender's loop: the sender is
    restarted, the restart counted, and later events are delivered (through the outbox, the
    crashed batch too: its rows are still there)."""
    provider = TracerProvider()
    sink = _remote(script=[42]) if durable else ScriptedSink(script=[42])  # type: ignore[list-item]
    outbox = tmp_path / "outbox.db" if durable else False
    processor = out.AnalyticsSpanProcessor(sinks=[sink], durable=outbox, **FAST)
    provider.add_span_processor(processor)
    try:
        end_request_spans(provider, 5)
        processor.force_flush(5000)
        end_request_spans(provider, 5)
        assert processor.force_flush(5000)
        [stats] = processor.stats().values()
        assert stats.restarts == 1 and stats.queued == 0
        if durable:
            assert (stats.sent, stats.failed) == (10, 0) and len(sink.delivered) == 10
        else:
            assert (stats.sent, stats.failed) == (5, 5) and len(sink.delivered) == 5
    finally:
        provider.shutdown()


class CountingOutbox(Outbox):
    """An outbox that counts the sender's lease attempts."""

    leases = 0

    def lease(self, sink: str, limit: int) -> list[tuple[int, AnalyticsEvent]]:
        self.leases += 1
        return super().lease(sink, limit)


def test_a_sender_with_nothing_it_may_lease_waits_instead_of_spinning(
    tmp_path: Path, pipelines: list[DurablePipeline]
) -> None:
    """Another live process holds the leases of every waiting row: the sender waits for their
    expiry or its backoff (0.2 s here) instead of trying again at once."""
    path = tmp_path / "outbox.db"
    first = _pipeline(pipelines, _remote(answer=lambda batch: retry()), path)
    first.offer(_events(30))
    assert not _flush(first, 0.3)
    first.shutdown(time.monotonic())
    with helper_process([sys.executable, "-c", HOLD_LEASES, str(path)]) as (_, leased):
        assert leased == "30"
        sink = _remote()
        outbox = CountingOutbox(path)
        settings = DeliverySettings(**{**FAST, "max_backoff": 0.2})
        pipelines.append(DurablePipeline(sink, settings, outbox))  # starts on its backlog at once
        started_cpu, started = time.process_time(), time.monotonic()
        threading.Event().wait(1.0)  # the interval measured: nothing to wait for but time
        cpu = (time.process_time() - started_cpu) / (time.monotonic() - started)
        assert outbox.leases <= 8, f"{outbox.leases} lease attempts in 1 s ({cpu:.0%} of a core)"
        assert sink.calls == []


UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]


@pytest.fixture
def pid_namespaces(tmp_path: Path) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("no unshare command")
    done = subprocess.run([*UNSHARE, "true"], capture_output=True, timeout=10)
    if done.returncode != 0:
        pytest.skip(f"cannot make a PID namespace here (needs root): {done.stderr.decode().strip()}")


def test_leases_hold_across_pid_namespaces_and_free_when_their_owner_dies(
    tmp_path: Path, pid_namespaces: None
) -> None:
    """Two processes that are both PID 1 of their own PID namespace (two containers sharing an
    outbox volume): one's leases stay its own while it lives, and are free the moment it dies."""
    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    outbox.put("sink", _events(10))
    outbox.close()
    take = [*UNSHARE, sys.executable, "-c", HOLD_LEASES.replace("sys.stdin.readline()", ""), str(path)]
    with helper_process([*UNSHARE, sys.executable, "-c", HOLD_LEASES, str(path)]) as (holder, held):
        assert held == "10"
        taken = subprocess.run(take, capture_output=True, text=True, timeout=30)
        assert taken.stdout.strip() == "0", "the other namespace took leases of a live owner"
        holder.send_signal(signal.SIGKILL)  # unshare --kill-child: its child dies with it
        holder.wait(10)
    deadline = time.monotonic() + 5  # the kernel ends the namespace's processes asynchronously
    while (got := subprocess.run(take, capture_output=True, text=True, timeout=30)).stdout.strip() == "0":
        assert time.monotonic() < deadline, "the dead owner's leases were not freed"
    assert got.stdout.strip() == "10", got.stderr


def _readable(path: Path, marker: bytes) -> list[str]:
    """The outbox's files (the database, its WAL) that still contain ``marker``."""
    return [p.name for p in sorted(path.parent.glob(path.name + "*")) if marker in p.read_bytes()]


def test_delivered_events_are_erased_from_the_outbox_file_and_its_wal(tmp_path: Path) -> None:
    """A delivered event's bytes are found neither in the outbox file nor in its WAL (while it
    waited, they were: the scan sees them)."""
    provider = TracerProvider()
    down = threading.Event()
    down.set()
    sink = _remote(answer=lambda batch: retry() if down.is_set() else None)
    path = tmp_path / "outbox.db"
    processor = out.AnalyticsSpanProcessor(sinks=[sink], durable=path, **FAST)
    provider.add_span_processor(processor)
    marker = "marker-3f9c2e71"
    try:
        end_request_spans(provider, 20, path=f"/{marker}")
        assert not processor.force_flush(300)
        assert _readable(path, marker.encode())  # waiting: in the file
        down.clear()
        assert processor.force_flush(5000)
        assert len(sink.delivered) == 20
        assert _readable(path, marker.encode()) == []
    finally:
        provider.shutdown()


FORKED = """
import os, sys, time
from otel_user_tracking.analytics.outbox import Outbox
outbox = Outbox(sys.argv[1])
print(len(outbox.lease("sink", 100)), flush=True)  # the parent holds them all
checked, check = os.pipe()  # the child says it looked
gone, go = os.pipe()  # closed when the parent exits
parent = os.getpid()
if os.fork() == 0:
    outbox.after_fork()  # what the processor's at-fork hook runs in the child
    os.close(go)
    print(len(outbox.lease("sink", 100)), flush=True)  # the parent lives: none
    os.write(check, b"x")
    os.read(gone, 1)  # returns as the parent exits, maybe before the kernel dropped its lock
    deadline = time.monotonic() + 10
    while os.getppid() == parent and time.monotonic() < deadline:
        time.sleep(0.001)  # reparented only once the parent's files (and locks) are gone
    print(len(outbox.lease("sink", 100)), flush=True)  # its leases are free: all
    os._exit(0)
os.read(checked, 1)
os._exit(0)
"""


def test_a_forked_child_is_another_lease_owner(tmp_path: Path) -> None:
    """A forked child (gunicorn's workers) does not take its live parent's leases, and takes
    them at once when the parent has exited."""
    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    outbox.put("sink", _events(5))
    outbox.close()
    with helper_process([sys.executable, "-c", FORKED, str(path)]) as (process, parent):
        assert process.stdout is not None
        assert [parent, process.stdout.readline().strip(), process.stdout.readline().strip()] == [
            "5",
            "0",
            "5",
        ]
