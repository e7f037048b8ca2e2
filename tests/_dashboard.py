"""Test stores for the dashboard, a ``DashboardServer`` run for the length of a test, and requests to it."""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

from otel_user_tracking.analytics.events import AnalyticsEvent
from otel_user_tracking.store.dashboard import DashboardServer
from otel_user_tracking.store.sqlite import schema as store

NOW = datetime(2026, 11, 20, 12, 30, tzinfo=timezone.utc)
PAGES = ["/", "/products/{id}", "/checkout", "/search"]


def event(kind: str, when: datetime, index: int, **fields: Any) -> AnalyticsEvent:
    """An event of ``kind`` at ``when`` whose trace and span ids are made from ``index``."""
    return AnalyticsEvent(
        type=kind,  # type: ignore[arg-type]
        trace_id=f"{index:032x}",
        span_id=f"{index:016x}",
        timestamp=when,
        **fields,
    )


def generate(count: int, seed: int = 3) -> list[AnalyticsEvent]:
    """Events over the 16 days before NOW: pageviews with statuses and durations, errors, custom."""
    rng = random.Random(seed)
    events = []
    for index in range(count):
        when = NOW - timedelta(seconds=rng.randrange(16 * 86400))
        common = {
            "route": rng.choice(PAGES),
            "visitor_id": f"v{rng.randrange(60)}",
            "user_id": f"user-{rng.randrange(20)}" if rng.random() < 0.4 else None,
            "session_id": f"s{rng.randrange(80)}" if rng.random() < 0.5 else None,
        }
        kind = rng.choices(["pageview", "error", "custom"], weights=[85, 5, 10])[0]
        if kind == "pageview":
            extra = {
                "status_code": rng.choice([200, 200, 200, 304, 404, 500]),
                "duration_ms": round(rng.expovariate(1 / 40), 3),
                "utm_campaign": rng.choice([None, None, "autumn", "launch"]),
                "method": "GET",
            }
            events.append(event("pageview", when, index, **common, **extra))
        elif kind == "error":
            events.append(
                event("error", when, index, error_type=rng.choice(["KeyError", "RuntimeError"]), **common)
            )
        else:
            meta = {"plan": "pro", "seats": 3} if rng.random() < 0.5 else {"plan": "team"}
            events.append(
                event("custom", when, index, name=rng.choice(["SIGNUP", "PAID"]), meta=meta, **common)
            )
    return events


def fill(path: Path, events: list[AnalyticsEvent]) -> Path:
    """Store ``events`` at ``path`` (created and migrated if new) in one transaction."""
    db = store.connect(path)
    try:
        db.execute("BEGIN")
        db.executemany(store.INSERT, events)
        db.execute("COMMIT")
    finally:
        db.close()
    return path


@contextlib.contextmanager
def running(server: DashboardServer) -> Iterator[DashboardServer]:
    """Serve ``server`` from a daemon thread; shut it down and close its socket afterwards."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def request(
    server: DashboardServer,
    method: str,
    path: str,
    body: Optional[str] = None,
    host: Optional[str] = None,
) -> tuple[int, dict[str, str], str]:
    """One request to ``server`` on 127.0.0.1 (``Host`` its own unless given): status, headers, body."""
    port = server.server_address[1]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Host": host or f"127.0.0.1:{port}"}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        connection.close()


def exchange(server: DashboardServer, data: bytes, timeout: float = 30) -> bytes:
    """Send ``data`` as it is and read until the server closes: its whole answer (b"" if none)."""
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
