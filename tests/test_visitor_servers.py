"""One browser is one visitor however the app is served: two workers, gunicorn, a restart."""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
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
    import time

    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def page(request):
        time.sleep(0.02)  # holds this worker's loop, so the other worker accepts the next ones
        return PlainTextResponse(str(os.getpid()))

    app = Starlette(routes=[Route("/items/{n}", page)])
    """
)
CLI = ["--traces_exporter", "none", "--metrics_exporter", "none", "--logs_exporter", "none"]
AGENT = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"}
SERVERS = {
    "uvicorn --workers 2": ["uvicorn", "app:app", "--host", "{host}", "--port", "{port}", "--workers", "2"],
    "gunicorn -w 2 -k UvicornWorker": [
        "gunicorn",
        "-w",
        "2",
        "-k",
        "uvicorn.workers.UvicornWorker",
        "-b",
        "{host}:{port}",
        "app:app",
    ],
}
CLIENTS = 4
TIME_LIMIT = 60.0  # seconds per run for both workers to answer (one may boot late on a busy host)


def _serve(server: UvicornServer) -> tuple[int, set[str]]:
    """Requests from one address and agent until both workers answered; (completed, worker pids)."""
    pids: set[str] = set()
    completed = 0
    lock = threading.Lock()

    deadline = time.monotonic() + TIME_LIMIT

    def client(index: int) -> None:
        nonlocal completed
        for n in itertools.count():
            if time.monotonic() > deadline:
                return
            status, _, body = request(
                "GET", f"{server.url}/items/{index}-{n}", headers=AGENT, source_address=CLIENT_HOST
            )
            assert status == 200
            with lock:
                completed += 1
                pids.add(body.decode())
                if len(pids) >= 2 and completed >= 20:
                    return

    threads = [threading.Thread(target=client, args=(index,)) for index in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIME_LIMIT + 10)
    return completed, pids


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SERVERS))
def test_one_browser_is_one_visitor_across_two_workers_and_a_restart(tmp_path: Path, name: str) -> None:
    """Two workers serving one address and agent, then a restart the same day: the report says 1 visitor."""
    database, env = app_with_store(tmp_path, APP, OTEL_PYTHON_USER_TRACKING_FLUSH_INTERVAL="0.2")
    completed, pids = 0, set()
    for _ in range(2):  # the second run is the restart
        server = UvicornServer(
            "", cwd=tmp_path, env=env, host=SERVER_HOST, instrument=CLI, command=SERVERS[name]
        )
        server.start()
        try:
            done, served = _serve(server)
        finally:
            server.stop()
        assert len(served) >= 2, served  # both workers answered
        completed += done
        pids |= served
    assert len(pids) >= 4  # four worker processes in all
    with contextlib.closing(sqlite3.connect(database)) as db:
        rows, visitors = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT visitor_id) FROM events WHERE type = 'pageview'"
        ).fetchone()
    # Exactly one row per request is tests/test_multiprocess_store.py's to prove; here, who they are.
    assert 0 < rows <= completed and visitors == 1, (rows, completed, visitors)
    report = report_json(database)
    assert (report["pageviews"], report["visitors"]) == (rows, 1)
