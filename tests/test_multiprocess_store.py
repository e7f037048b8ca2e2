"""Several worker processes, one embedded store: every completed request is exactly one row."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import textwrap
import threading
import time
from pathlib import Path

import pytest

from ._cli import report_json
from ._uvicorn import CLIENT_HOST, SERVER_HOST, UvicornServer, app_with_store, request

APP = textwrap.dedent(
    """
    import os

    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def page(request):
        return PlainTextResponse(str(os.getpid()))

    app = Starlette(routes=[Route("/items/{n}", page)])
    """
)
CLI = ["--traces_exporter", "none", "--metrics_exporter", "none", "--logs_exporter", "none"]
CLIENTS = 8
PER_CLIENT = 400
TIME_LIMIT = 60.0


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(child) for child in found]


def _serving_worker(server: UvicornServer, served: set[str]) -> int:
    """A worker process (a child of the supervisor) that has answered requests."""
    assert server.process is not None
    workers = [pid for pid in _children(server.process.pid) if str(pid) in served]
    assert workers, (served, _children(server.process.pid))
    return workers[0]


@pytest.mark.slow
def test_two_workers_one_store_every_completed_request_is_one_row(tmp_path: Path) -> None:
    """Two workers, one store, a worker restarted mid-load, the report reading meanwhile: no lost row."""
    database, env = app_with_store(tmp_path, APP, OTEL_PYTHON_USER_TRACKING_FLUSH_INTERVAL="0.2")
    server = UvicornServer(
        "app:app", cwd=tmp_path, env=env, host=SERVER_HOST, instrument=CLI, uvicorn_args=["--workers", "2"]
    ).start()
    completed = 0
    pids: set[str] = set()
    lock = threading.Lock()
    deadline = time.monotonic() + TIME_LIMIT

    def client(index: int) -> None:
        nonlocal completed
        for n in range(PER_CLIENT):
            if time.monotonic() > deadline:
                return
            try:
                status, _, body = request(
                    "GET", f"{server.url}/items/{index}-{n}", source_address=CLIENT_HOST
                )
            except OSError:
                continue  # a connection the restarted worker closed: not completed, not counted
            if status == 200:
                with lock:
                    completed += 1
                    pids.add(body.decode())

    threads = [threading.Thread(target=client, args=(index,)) for index in range(CLIENTS)]
    reports: list[dict[str, object]] = []
    try:
        for thread in threads:
            thread.start()
        while completed < CLIENTS * PER_CLIENT // 5 and time.monotonic() < deadline:
            time.sleep(0.05)  # waiting for load to build up: no event to wait on
        with lock:
            worker = _serving_worker(server, pids)
        os.kill(worker, signal.SIGTERM)  # the supervisor starts a new one; this one flushes
        reports.append(report_json(database, timeout=30))
        for thread in threads:
            thread.join(TIME_LIMIT)
        extra = CLIENTS
        while len(pids) < 3 and time.monotonic() < deadline:  # until the restarted worker answers
            client(extra)
            extra += 1
    finally:
        server.stop()
    assert "database is locked" not in server.stderr
    with contextlib.closing(sqlite3.connect(database)) as db:
        rows = db.execute("SELECT COUNT(*) FROM events WHERE type = 'pageview'").fetchone()[0]
        distinct = db.execute("SELECT COUNT(DISTINCT path) FROM events WHERE type = 'pageview'").fetchone()[0]
    assert completed > CLIENTS * PER_CLIENT // 2
    assert str(worker) in pids and len(pids) >= 3  # both workers, then the restarted one, served
    assert rows == completed and distinct == completed  # exactly one row per completed request
    assert 0 < int(reports[0]["pageviews"]) <= completed  # type: ignore[call-overload]
