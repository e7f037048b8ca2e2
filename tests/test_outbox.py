"""Durable delivery: events for remote sinks wait in a local outbox until the backend took them."""

from __future__ import annotations

import contextlib
import gzip
import json
import signal
import socket
import sqlite3
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

import otel_user_tracking as out

from ._sinks import end_request_spans
from ._uvicorn import CLIENT_HOST, SERVER_HOST, UvicornServer, request

FAST = {"initial_backoff": 0.01, "max_backoff": 0.05, "flush_interval": 0.05}


class Backend:
    """A loopback PostHog on a port chosen in advance: refusing connections until ``start``."""

    def __init__(self, port: int, status: int = 200) -> None:
        self.port = port
        self.status = status
        self.uuids: list[str] = []
        self._changed = threading.Condition()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> Backend:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                batch = json.loads(gzip.decompress(body)).get("batch", [])
                with owner._changed:
                    owner.uuids.extend(event["uuid"] for event in batch)
                    owner._changed.notify_all()
                self.send_response(owner.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True).start()
        return self

    def wait_for(self, count: int, timeout: float = 20.0) -> list[str]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(set(self.uuids)) >= count, timeout):
                raise TimeoutError(f"{len(set(self.uuids))} of {count} events arrived")
            return list(self.uuids)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def backend() -> Iterator[Backend]:
    made = Backend(_free_port())
    yield made
    made.close()


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    made = TracerProvider()
    yield made
    made.shutdown()


def _processor(provider: TracerProvider, backend: Backend, outbox: Path, **options: Any) -> Any:
    sink = out.sinks.PostHogSink("phc_outbox", url=f"http://127.0.0.1:{backend.port}", timeout=1.0)
    processor = out.AnalyticsSpanProcessor(sinks=[sink], durable=outbox, **{**FAST, **options})
    provider.add_span_processor(processor)
    return processor


def _backlog(outbox: Path) -> list[str]:
    """The event ids waiting in the outbox file."""
    with contextlib.closing(sqlite3.connect(outbox)) as db:
        return [json.loads(event)[0] for (event,) in db.execute("SELECT event FROM outbox ORDER BY id")]


def test_events_wait_out_an_outage_in_the_outbox_and_go_when_the_backend_returns(
    provider: TracerProvider, backend: Backend, tmp_path: Path
) -> None:
    """With the backend refusing connections events stay in the outbox; all arrive once it is back."""
    processor = _processor(provider, backend, tmp_path / "outbox.db")
    end_request_spans(provider, 30)
    assert processor.force_flush(500) is False  # nothing can be delivered yet
    stats = processor.stats()[processor.sinks[0].name]
    assert (stats.enqueued, stats.sent, stats.failed, stats.dropped, stats.queued) == (30, 0, 0, 0, 30)
    assert len(_backlog(tmp_path / "outbox.db")) == 30
    backend.start()
    assert len(set(backend.wait_for(30))) == 30
    assert processor.force_flush(5000)
    assert _backlog(tmp_path / "outbox.db") == []
    assert processor.stats()[processor.sinks[0].name].sent == 30


def test_permanent_refusals_are_counted_as_failed_and_removed(
    provider: TracerProvider, backend: Backend, tmp_path: Path
) -> None:
    """A 400 from the backend is not kept forever: the events count as failed and leave the outbox."""
    backend.status = 400
    backend.start()
    processor = _processor(provider, backend, tmp_path / "outbox.db")
    end_request_spans(provider, 5)
    assert processor.force_flush(5000)
    assert processor.stats()[processor.sinks[0].name].failed == 5
    assert _backlog(tmp_path / "outbox.db") == []


def test_a_full_outbox_drops_the_oldest_and_counts_them(
    provider: TracerProvider, backend: Backend, tmp_path: Path
) -> None:
    """Past ``max_outbox_size`` the oldest undelivered events are dropped, counted per sink."""
    processor = _processor(provider, backend, tmp_path / "outbox.db", max_outbox_size=10)
    end_request_spans(provider, 30, path="/a")
    processor.force_flush(300)
    stats = processor.stats()[processor.sinks[0].name]
    assert stats.dropped == 20 and stats.queued == 10
    assert len(_backlog(tmp_path / "outbox.db")) == 10


APP = textwrap.dedent(
    """
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def page(request):
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/items/{n}", page)])
    """
)
CLI = ["--traces_exporter", "none", "--metrics_exporter", "none", "--logs_exporter", "none"]


def _wait_for_backlog(outbox: Path, count: int, timeout: float = 15.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if outbox.exists():
            with contextlib.suppress(sqlite3.OperationalError):
                ids = _backlog(outbox)
                if len(ids) >= count:
                    return ids
        time.sleep(0.05)  # polling a file another process writes: there is no event to wait on
    raise TimeoutError(f"the outbox did not reach {count} events within {timeout}s")


@pytest.mark.slow
def test_accepted_events_survive_kill_9_during_an_outage(tmp_path: Path, backend: Backend) -> None:
    """kill -9 during an outage, restart with the same settings: every accepted event arrives, same ids."""
    (tmp_path / "app.py").write_text(APP)
    outbox = tmp_path / "outbox.db"
    env = {
        "OTEL_PYTHON_USER_TRACKING_SINKS": f"posthog+http://phc_kill9@127.0.0.1:{backend.port}",
        "OTEL_PYTHON_USER_TRACKING_OUTBOX": f"sqlite:///{outbox}",
        "OTEL_PYTHON_USER_TRACKING_INITIAL_BACKOFF": "0.05",
        "OTEL_PYTHON_USER_TRACKING_MAX_BACKOFF": "0.2",
    }
    server = UvicornServer("app:app", cwd=tmp_path, env=env, host=SERVER_HOST, instrument=CLI).start()
    try:
        for n in range(40):
            status, _, _ = request("GET", f"{server.url}/items/{n}", source_address=CLIENT_HOST)
            assert status == 200
        accepted = _wait_for_backlog(outbox, 40)
    finally:
        server.stop(signal.SIGKILL)
    assert server.returncode == -signal.SIGKILL
    backend.start()
    restarted = UvicornServer("app:app", cwd=tmp_path, env=env, host=SERVER_HOST, instrument=CLI).start()
    try:
        delivered = backend.wait_for(40)
    finally:
        restarted.stop()
    assert set(delivered) == set(accepted)  # at least once, with the same event ids
    assert _backlog(outbox) == []


def test_a_sender_still_retrying_when_shutdown_closes_the_outbox_stops_quietly(
    backend: Backend, tmp_path: Path
) -> None:
    """Past shutdown's deadline the processor closes the outbox while the sender may still be
    retrying a dead backend; the sender then stops (what it held stays in the file for the
    next start) instead of dying on a closed database in its thread."""
    provider = TracerProvider()
    processor = _processor(
        provider, backend, tmp_path / "outbox.db", initial_backoff=0.001, max_backoff=0.002
    )
    end_request_spans(provider, 20)
    assert processor.force_flush(200) is False  # converted and stored; the backend is down
    name = f"otel-user-tracking-{processor.sinks[0].name}"
    (sender,) = [thread for thread in threading.enumerate() if thread.name == name]
    failures: list[BaseException] = []
    previous, threading.excepthook = threading.excepthook, lambda args: failures.append(args.exc_value)
    try:
        processor.shutdown(timeout_millis=50)  # the backend refuses connections: still retrying
        sender.join(5)
    finally:
        threading.excepthook = previous
    assert not sender.is_alive()
    assert failures == []
    assert len(_backlog(tmp_path / "outbox.db")) == 20
