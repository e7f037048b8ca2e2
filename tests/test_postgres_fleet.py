"""A fleet on one PostgreSQL store: four app processes writing at once, the database restarted midway."""

from __future__ import annotations

import itertools
import textwrap
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

from otel_user_tracking.store.report import build_report

from ._postgres import PASSWORD, PostgresServer
from ._uvicorn import UvicornServer, request
from .test_postgres_store import count

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
HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
CLIENT = "127.0.0.6"
VISITORS = [f"Mozilla/5.0 (X11; Linux x86_64) Firefox/{version}.0" for version in (126, 127, 128)]
REQUESTS_PER_VISITOR = 120


def test_four_processes_and_a_restart_store_each_request_once_and_each_visitor_once(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """Four uvicorn processes on 127.0.0.2-5 share one database, restarted midway: the rows are the
    completed requests exactly, and three browsers are three visitors across all processes."""
    url = postgres.database()
    (tmp_path / "app.py").write_text(APP)
    env = {
        "OTEL_PYTHON_USER_TRACKING_SINKS": url,
        "OTEL_PYTHON_USER_TRACKING_FLUSH_INTERVAL": "0.2",
        "OTEL_PYTHON_USER_TRACKING_MAX_RETRIES": "100",
        "OTEL_PYTHON_USER_TRACKING_MAX_BACKOFF": "1",
        "OTEL_PYTHON_USER_TRACKING_SHUTDOWN_TIMEOUT": "20",
    }
    servers = [UvicornServer("app:app", cwd=tmp_path, env=env, host=host, instrument=CLI) for host in HOSTS]
    for server in servers:
        server.start()
    completed = 0
    lock = threading.Lock()
    halfway = threading.Barrier(len(VISITORS) + 1)

    def browse(agent: str) -> None:
        nonlocal completed
        for n, server in zip(range(REQUESTS_PER_VISITOR), itertools.cycle(servers)):
            if n == REQUESTS_PER_VISITOR // 2:
                halfway.wait(60)
            status, _, _ = request(
                "GET", f"{server.url}/items/{n}", headers={"user-agent": agent}, source_address=CLIENT
            )
            assert status == 200
            with lock:
                completed += 1

    try:
        browsers = [threading.Thread(target=browse, args=(agent,)) for agent in VISITORS]
        for browser in browsers:
            browser.start()
        halfway.wait(60)
        postgres.restart("fast")  # the apps keep answering; their batches wait and retry
        for browser in browsers:
            browser.join(120)
    finally:
        for server in servers:
            server.stop()  # SIGTERM: each process flushes what it holds before it exits
    assert completed == len(VISITORS) * REQUESTS_PER_VISITOR
    pageviews = "SELECT count(*), count(DISTINCT visitor_id) FROM events WHERE type = 'pageview'"
    rows, visitors = count(url, pageviews)
    assert rows == completed, [server.stderr[-2000:] for server in servers]
    assert visitors == len(VISITORS)  # one salt a day for the whole fleet, from the database
    report = build_report(url, datetime.now(timezone.utc) - timedelta(hours=1))
    assert report.pageviews == completed and report.visitors == len(VISITORS)
    for server in servers:
        assert PASSWORD not in server.stdout + server.stderr
