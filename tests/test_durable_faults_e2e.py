"""Durable delivery through every fault at once, over real HTTP: the backend down then up, a
SIGKILL of the producing process, the outbox locked by another process, its disk full then
freed. Two webhooks of one host (two paths, two credentials) share the outbox."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from ._fault_server import FaultServer
from ._helper_process import holding_lock
from ._small_fs import fill, mounted_tmpfs

ROOT = Path(__file__).resolve().parent.parent


class Producer:
    """``tests/_durable_producer.py`` in its own process, one command at a time."""

    def __init__(self, outbox: Path, url: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests._durable_producer", str(outbox), url],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.read() == {"ready": True}

    def read(self) -> Any:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, "the producer exited"
        return json.loads(line)

    def ask(self, **command: Any) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self.read()

    def webhook_stats(self) -> list[dict[str, int]]:
        return [entry for name, entry in self.ask(stats=1)["stats"].items() if name.startswith("webhook")]

    def until(self, condition: Callable[[list[dict[str, int]]], bool], timeout: float = 20.0) -> None:
        """Ask for the counters until ``condition`` holds (they move in another process)."""
        deadline = time.monotonic() + timeout
        while not condition(stats := self.webhook_stats()):
            assert time.monotonic() < deadline, stats
            time.sleep(0.05)

    def close(self) -> None:
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    yield from mounted_tmpfs(tmp_path / "fs", "4m")


def _rows(outbox: Path) -> int:
    with contextlib.closing(sqlite3.connect(outbox)) as db:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])


def _delivered(server: FaultServer) -> dict[str, Counter[str]]:
    """Event ids a 2xx took, per path; every request's credential matches its path."""
    received: dict[str, Counter[str]] = {"/a": Counter(), "/b": Counter()}
    for request in server.requests:
        lines = request.head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        auth = [line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("authorization:")]
        assert auth == [f"Bearer token-{path[1:]}"], (path, auth)
        if request.mode == "ok":
            received[path].update(request.event_ids())
    return received


def _disk_full_then_freed(producer: Producer, mount: Path) -> Any:
    """30 events while the outbox's disk is full (outbox errors counted), then freed; the exit's answer."""
    filler = fill(mount)
    try:
        errors = sum(entry["outbox_errors"] for entry in producer.webhook_stats())
        producer.ask(produce=30)
        producer.until(lambda stats: sum(entry["outbox_errors"] for entry in stats) > errors)
    finally:
        filler.unlink()
    assert producer.ask(flush=20_000) == {"flushed": True}
    return producer.ask(exit=1)


@pytest.mark.slow
def test_every_accepted_event_reaches_each_sink_exactly_once_through_every_fault(small_fs: Path) -> None:
    """Backend down, producer SIGKILLed mid-retry, outbox locked past the busy timeout by another
    process while a new producer starts and the backend returns, the outbox's disk full then
    freed: every accepted event reaches /a and /b exactly once each, none with the other's
    credential, nothing is dropped, and the outbox ends empty."""
    outbox = small_fs / "outbox.db"
    with FaultServer() as server:
        server.set("503")  # the backend is down
        first = Producer(outbox, server.url)
        try:
            first.ask(produce=40)
            assert first.ask(flush=500) == {"flushed": False}
            accepted = set(first.ask(ids=1)["ids"])
            assert len(accepted) == 40 and _rows(outbox) == 80  # stored for both webhooks
            server.wait_for(lambda s: len(s.requests) >= 4)  # retrying
            first.process.send_signal(signal.SIGKILL)
            assert first.process.wait(10) == -signal.SIGKILL
        finally:
            first.close()

        with holding_lock(str(outbox)) as (locker, ready):
            assert ready == "locked"
            server.set("ok")  # the backend is back
            second = Producer(outbox, server.url)
            try:
                second.ask(produce=30)
                second.until(lambda stats: all(entry["outbox_errors"] >= 1 for entry in stats))
                assert locker.stdin is not None
                locker.stdin.close()  # the lock goes
                locker.wait(10)
                assert second.ask(flush=20_000) == {"flushed": True}
                final = _disk_full_then_freed(second, small_fs)
            finally:
                second.close()

    accepted |= set(final["ids"])
    assert len(accepted) == 100
    for name, entry in final["stats"].items():
        if name.startswith("webhook"):
            assert (entry["dropped"], entry["failed"], entry["queued"]) == (0, 0, 0), (name, entry)
    received = _delivered(server)
    for path in ("/a", "/b"):
        assert set(received[path]) == accepted, path
        assert set(received[path].values()) == {1}, f"{path}: some events arrived twice"
    assert _rows(outbox) == 0
