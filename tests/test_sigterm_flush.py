"""SIGTERM on a server without a lifespan shutdown delivers every queued event, and then does
what it did before (request/shutdown.py)."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from ._uvicorn import SERVER_HOST, UvicornServer, app_with_store, base_env, request

# Any WSGI app, wrapped in the one documented line, served by wsgiref (SIGTERM left at its default).
PLAIN_WSGI = textwrap.dedent(
    """
    import sys
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from otel_user_tracking import UserTrackingWSGIMiddleware


    def hello(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello " + environ["PATH_INFO"].encode()]


    application = UserTrackingWSGIMiddleware(hello)


    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass


    if __name__ == "__main__":
        make_server(sys.argv[1], int(sys.argv[2]), application, handler_class=Quiet).serve_forever()
    """
)
CLI = ["--traces_exporter", "console", "--metrics_exporter", "none", "--logs_exporter", "none"]


def test_sigterm_to_a_plain_wsgi_server_loses_no_queued_event(tmp_path: Path) -> None:
    """Events queued for the 5 s batch reach the store at SIGTERM, and the server still dies by it."""
    database, env = app_with_store(tmp_path, PLAIN_WSGI)
    command = ["python", "app.py", "{host}", "{port}"]
    server = UvicornServer("", cwd=tmp_path, env=env, host=SERVER_HOST, instrument=CLI, command=command)
    server.start()
    try:
        statuses = [request("GET", f"{server.url}/page/{n}")[0] for n in range(6)]
    finally:
        returncode = server.stop(signal.SIGTERM)
    assert statuses == [200] * 6, server.stderr
    assert returncode == -signal.SIGTERM, server.stderr  # the default action, as without us
    with contextlib.closing(sqlite3.connect(database)) as db:
        paths = sorted(row[0] for row in db.execute("SELECT path FROM events WHERE type = 'pageview'"))
    assert paths == [f"/page/{n}" for n in range(6)], server.stderr
    assert server.stdout.count('"kind": "SpanKind.SERVER"') == 6  # the spans were flushed too


CHAINED = textwrap.dedent(
    """
    import os, signal, sys

    def theirs(signum, frame):
        print("their handler ran", flush=True)
        sys.exit(3)

    signal.signal(signal.SIGTERM, theirs)
    from otel_user_tracking.request import lifespan, shutdown

    flushed = []
    lifespan.flush_everything = lambda budget=None: flushed.append(budget) or print("flushed", flush=True)
    shutdown.install_sigterm_flush()
    os.kill(os.getpid(), signal.SIGTERM)
    """
)


def test_a_handler_installed_before_still_runs_after_the_flush(tmp_path: Path) -> None:
    """The server's own SIGTERM handler is called after the flush: its behaviour is unchanged."""
    script = tmp_path / "chained.py"
    script.write_text(CHAINED)
    done = subprocess.run(
        [sys.executable, str(script)], env=base_env(), capture_output=True, text=True, timeout=30
    )
    assert done.stdout.splitlines() == ["flushed", "their handler ran"], done.stderr
    assert done.returncode == 3
