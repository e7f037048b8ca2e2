"""One check both doors' excluded-URL tests make under the real ``opentelemetry-instrument``:
an app serving ``/health`` and ``/items``, with ``/health`` excluded by a variable, exports one
SERVER span (``GET /items``), nothing named after ``/health``, and one pageview."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
from pathlib import Path
from typing import Optional

from ._otlp_receiver import OTLPReceiver
from ._uvicorn import SERVER_HOST, UvicornServer, app_with_store, request

CLI = ["--traces_exporter", "otlp", "--metrics_exporter", "none", "--logs_exporter", "none"]


def assert_health_excluded_under_cli(
    tmp_path: Path,
    receiver: OTLPReceiver,
    source: str,
    command: Optional[list[str]] = None,
    **env: str,
) -> None:
    """Serve ``source`` as ``app.py`` (uvicorn ``app:app``, or ``command``) under the CLI with ``env``."""
    database, server_env = app_with_store(
        tmp_path,
        source,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=receiver.traces_endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",
        **env,
    )
    app = "" if command else "app:app"
    server = UvicornServer(
        app, cwd=tmp_path, env=server_env, host=SERVER_HOST, instrument=CLI, command=command
    )
    server.start()
    try:
        statuses = [request("GET", f"{server.url}{path}")[0] for path in ("/health", "/items")]
        receiver.wait_for(lambda received: received.spans(kind="SERVER"))
    finally:
        server.stop(signal.SIGTERM)
    assert statuses == [200, 200], server.stderr
    names = [span.name for span in receiver.spans()]
    assert [span.name for span in receiver.spans(kind="SERVER")] == ["GET /items"], names
    assert not [name for name in names if "/health" in name], names
    with contextlib.closing(sqlite3.connect(database)) as db:
        pages = [row[0] for row in db.execute("SELECT page FROM events WHERE type = 'pageview'")]
    assert pages == ["/items"], server.stderr
