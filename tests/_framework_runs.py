"""One real server of a framework under ``opentelemetry-instrument``, its traffic, what it exported.

Each framework's end-to-end module starts its app once (a module fixture), logs in through
the framework's own auth, sends the same six requests, stops the server with SIGTERM, and
keeps the OTLP spans and the analytics store for its tests to read:

==========  ==============================================================
``login``   the framework's login (returns a token or sets a cookie)
``me``      an authenticated page: ``user.*`` on the span
``book``    a route with a path parameter: named by its template
``missing`` no route matches (404): named by the method alone
``boom``    an exception no handler catches (the framework's own 500)
``handled`` an exception an app handler renders as a 500
==========  ==============================================================
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from otel_user_tracking.frameworks import ADAPTERS

from ._otlp_receiver import OTLPReceiver, ReceivedSpan
from ._uvicorn import CLIENT_HOST, SERVER_HOST, UvicornServer, request

OTLP_CLI = ["--traces_exporter", "otlp", "--metrics_exporter", "none", "--logs_exporter", "none"]
PAGES = ("login", "me", "book", "missing", "boom", "handled")


@dataclass
class FrameworkRun:
    """What one server run exported: spans by page, analytics rows, the server's output."""

    spans: dict[str, ReceivedSpan]
    server_spans: list[ReceivedSpan]
    statuses: dict[str, int]
    rows: list[dict[str, Any]]
    stderr: str
    all_spans: list[ReceivedSpan] = field(default_factory=list)

    def describe(self) -> str:
        return (
            "\n".join(
                f"  {span.kind} {span.name!r} attributes={span.attributes} "
                f"events={[event.name for event in span.events]}"
                for span in self.all_spans
            )
            + f"\nserver stderr:\n{self.stderr[-4000:]}"
        )


Login = Callable[[str], dict[str, str]]  # base URL -> headers of the logged-in requests


def run_framework(
    tmp_path: Path,
    source: str,
    *,
    paths: Mapping[str, str],
    login: Login,
    app: str = "app:app",
    command: Optional[Sequence[str]] = None,
    env: Optional[Mapping[str, str]] = None,
) -> FrameworkRun:
    """Write ``source`` as ``app.py``, serve it under the CLI, send the pages, stop it, collect."""
    (tmp_path / "app.py").write_text(source)
    database = tmp_path / "analytics.db"
    with OTLPReceiver() as receiver:
        server_env = {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.traces_endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_SERVICE_NAME": "framework-e2e",
            "OTEL_PYTHON_USER_TRACKING_SINKS": f"sqlite:///{database}",
            **(env or {}),
        }
        server = UvicornServer(
            app, cwd=tmp_path, env=server_env, host=SERVER_HOST, instrument=OTLP_CLI, command=command
        )
        server.start()
        statuses: dict[str, int] = {}
        try:
            headers = login(server.url)
            statuses["login"] = 200
            for page in PAGES[1:]:
                url = server.url + paths[page]
                statuses[page] = request("GET", url, headers, source_address=CLIENT_HOST)[0]
            receiver.wait_for(lambda r: len(r.spans(kind="SERVER")) >= len(PAGES))
        finally:
            server.stop()
        spans = receiver.spans()
    server_spans = [span for span in spans if span.kind == "SERVER"]
    by_path = {_path(span): span for span in server_spans}
    wanted = {"login": paths["login"], **{page: paths[page] for page in PAGES[1:]}}
    return FrameworkRun(
        spans={page: by_path[path] for page, path in wanted.items() if path in by_path},
        server_spans=server_spans,
        statuses=statuses,
        rows=_rows(database),
        stderr=server.stderr,
        all_spans=spans,
    )


def _path(span: ReceivedSpan) -> str:
    target = span.attributes.get("url.path") or span.attributes.get("http.target") or ""
    return str(target).split("?", 1)[0]


def _rows(database: Path) -> list[dict[str, Any]]:
    if not database.exists():
        return []
    with contextlib.closing(sqlite3.connect(database)) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM events ORDER BY ts_us")]


def json_login(url: str, status: int) -> tuple[dict[str, str], bytes]:
    """POST jane's credentials as JSON to ``url``; the response headers and body (``status`` checked)."""
    got, headers, body = request(
        "POST",
        url,
        {"content-type": "application/json"},
        source_address=CLIENT_HOST,
        body=json.dumps({"username": "jane", "password": "pw"}).encode(),
    )
    assert got == status, body
    return headers, body


def skip_unless_supported(framework: str, modules: Sequence[str] = ()) -> None:
    """Skip the test unless ``modules`` import and the framework's adapter would be installed.

    The min leg pins Flask 2.3, which admits no Quart the adapter supports (>= 0.20 needs Flask 3).
    """
    for module in modules:
        pytest.importorskip(module, reason=f"{module} is not installed (the {framework} extra)")
    [registration] = [adapter for adapter in ADAPTERS if adapter.name == framework]
    if not registration.installed():
        pytest.skip(f"the installed {framework} is not {registration.requirement!r}, which its adapter needs")


def user_attributes(span: ReceivedSpan) -> dict[str, Any]:
    return {key: value for key, value in span.attributes.items() if key.startswith("user.")}
