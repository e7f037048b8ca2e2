"""Django with zero code, under the real ``opentelemetry-instrument`` and real servers.

One visit (a login through ``django.contrib.auth``, pages that do and do not read
``request.user``, an included route, a ``re_path``, a 404, Django's 500 page, a middleware's
own 500) per server, with and without contrib's Django instrumentation, then SIGTERM; the
spans arrive over OTLP and the analytics in a SQLite store.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

from ._django_project import (
    EMAIL,
    GROUP,
    PASSWORD,
    SETTINGS_MODULE,
    USERNAME,
    migrate_and_create_user,
    write_project,
)
from ._otlp_receiver import OTLPReceiver, describe_spans, span_path
from ._uvicorn import SERVER_HOST, UvicornServer, request

OTLP_CLI = ["--traces_exporter", "otlp", "--metrics_exporter", "none", "--logs_exporter", "none"]
BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"}
SERVERS = {
    "uvicorn": ["uvicorn", "site_config.asgi:application", "--host", "{host}", "--port", "{port}"],
    "gunicorn": ["gunicorn", "--bind", "{host}:{port}", "--workers", "1", "site_config.wsgi:application"],
    "runserver": ["python", "manage.py", "runserver", "--noreload", "{host}:{port}"],
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Django project, migrated, with the user ``jane``: made once for the module."""
    directory = write_project(tmp_path_factory.mktemp("django_project"))
    migrate_and_create_user(directory)
    return directory


@dataclass
class Visit:
    """What one visit did: each request's path and status, and the process's query counts."""

    statuses: dict[str, int] = field(default_factory=dict)
    queries: list[int] = field(default_factory=list)
    requests: int = 0

    def call(
        self, server: UvicornServer, method: str, path: str, cookie: str = "", body: Optional[bytes] = None
    ) -> tuple[int, dict[str, str], bytes]:
        headers = dict(BROWSER)
        if cookie:
            headers["Cookie"] = cookie
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        status, response_headers, data = request(method, server.url + path, headers, body=body)
        self.requests += 1
        if path != "/queries/":
            self.statuses[path] = status
        return status, response_headers, data

    def count_queries(self, server: UvicornServer) -> None:
        self.queries.append(json.loads(self.call(server, "GET", "/queries/")[2])["statements"])


def visit(server: UvicornServer) -> Visit:
    done = Visit()
    credentials = f"username={USERNAME}&password={PASSWORD.replace(' ', '+')}".encode()
    _, headers, _ = done.call(server, "POST", "/login/", body=credentials)
    found = re.search(r"sessionid=([^;]+)", headers.get("set-cookie", ""))
    cookie = f"sessionid={found.group(1)}" if found else ""
    done.count_queries(server)
    done.call(server, "GET", "/", cookie)
    done.count_queries(server)
    done.call(server, "GET", "/catalog/book/1/", cookie)
    done.count_queries(server)
    for path in ("/archive/2024/", "/nope/x", "/boom/", "/handled/"):
        done.call(server, "GET", path)
    return done


@contextlib.contextmanager
def django_server(
    project: Path, log_dir: Path, receiver: OTLPReceiver, server: str, contrib: bool
) -> Iterator[tuple[UvicornServer, Path]]:
    database = log_dir / "analytics.db"
    env = {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.traces_endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_PYTHON_USER_TRACKING_SINKS": f"sqlite:///{database}",
    }
    if contrib:  # contrib's instrumentor reads the settings as it loads: they must be named by then
        env["DJANGO_SETTINGS_MODULE"] = SETTINGS_MODULE
    else:
        env["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"] = "django"
    running = UvicornServer(
        "",
        cwd=project,
        env=env,
        host=SERVER_HOST,
        instrument=OTLP_CLI,
        command=SERVERS[server],
        log_dir=log_dir,
    ).start()
    try:
        yield running, database
    finally:
        running.stop(signal.SIGTERM)


@pytest.mark.parametrize("contrib", [False, True], ids=["ours", "with-contrib-django"])
@pytest.mark.parametrize("server", sorted(SERVERS))
def test_django_visit_under_the_cli(
    project: Path, tmp_path: Path, otlp_receiver: OTLPReceiver, server: str, contrib: bool
) -> None:
    """One SERVER span per request with the logged-in user, route names and one exception event
    per 500; no query for a page that never read the user; every event stored at SIGTERM."""
    with django_server(project, tmp_path, otlp_receiver, server, contrib) as (running, database):
        done = visit(running)
        otlp_receiver.wait_for(lambda r: len(r.spans(kind="SERVER")) >= done.requests)
    assert done.statuses == {
        "/login/": 200, "/": 200, "/catalog/book/1/": 200, "/archive/2024/": 200,
        "/nope/x": 404, "/boom/": 500, "/handled/": 500,
    }, running.stderr  # fmt: skip
    spans = otlp_receiver.spans()
    assert len(spans) == done.requests and all(span.kind == "SERVER" for span in spans), describe_spans(spans)
    by_path = {span_path(span): span for span in spans}
    assert set(by_path) == {*done.statuses, "/queries/"}, describe_spans(spans)

    user = {"user.id": "1", "user.name": USERNAME, "user.email": EMAIL}
    login, public, book = by_path["/login/"], by_path["/"], by_path["/catalog/book/1/"]
    assert {key: login.attributes.get(key) for key in user} == user, describe_spans([login])
    assert {key: book.attributes.get(key) for key in user} == user, describe_spans([book])
    assert book.attributes.get("user.roles") == [GROUP], describe_spans([book])
    assert not [key for key in public.attributes if key.startswith("user.")], describe_spans([public])
    assert done.queries[1] == done.queries[0], "reading the user ran a query the view did not run"
    assert done.queries[2] > done.queries[1]  # the book page did read it

    names = {path: span.name for path, span in by_path.items()}
    assert names["/catalog/book/1/"] == "GET catalog/book/<int:pk>/"
    assert names["/archive/2024/"] == "GET ^archive/(?P<year>[0-9]{4})/$"
    assert names["/nope/x"] == "GET" and "http.route" not in by_path["/nope/x"].attributes
    assert book.attributes.get("http.route") == "catalog/book/<int:pk>/"
    for path, error in (("/boom/", "RuntimeError"), ("/handled/", "site_config.middleware.AppError")):
        span = by_path[path]
        raised = [event.attributes.get("exception.type") for event in span.events_named("exception")]
        assert raised == [error], describe_spans([span])
        assert span.status_code == "ERROR", describe_spans([span])

    with contextlib.closing(sqlite3.connect(database)) as db:
        rows = db.execute("SELECT type, page, user_id, error_type FROM events").fetchall()
    pageviews = [row for row in rows if row[0] == "pageview"]
    assert len(pageviews) == done.requests, (rows, running.stderr)
    assert ("pageview", "catalog/book/<int:pk>/", "1", None) in rows
    assert sorted(row[3] for row in rows if row[0] == "error") == [
        "RuntimeError",
        "site_config.middleware.AppError",
    ]
