"""Flask with zero code under the real ``opentelemetry-instrument``: gunicorn and ``flask run``,
with contrib's Flask instrumentation disabled and active, serving ``examples/flask_app.py``.

Each server runs once per module through a logged-in session (Flask-Login's own login flow),
then gets SIGTERM; the tests read what it exported (OTLP) and what reached the store.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest

from ._otlp_receiver import OTLPReceiver, ReceivedSpan
from ._uvicorn import CLIENT_HOST, SERVER_HOST, UvicornServer
from ._uvicorn import request as http_request

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "flask_app.py"
CLI = ["--traces_exporter", "otlp", "--metrics_exporter", "none", "--logs_exporter", "none"]
GUNICORN = ["gunicorn", "-w", "1", "-b", "{host}:{port}", "flask_app:app"]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
# (method, path, logged in, status): the session each server serves, in order
SESSION = [
    ("POST", "/login", False, 200),
    ("GET", "/books/7", True, 200),
    ("GET", "/books/8", True, 200),
    ("GET", "/about", True, 200),
    ("GET", "/books/99", True, 404),
    ("GET", "/no/such/page", True, 404),
    ("GET", "/boom", True, 500),
    ("POST", "/checkout", True, 502),
]


@dataclass(frozen=True)
class Served:
    """What one server did with ``SESSION``: statuses, exported SERVER spans by path, the store."""

    name: str
    contrib_flask: bool
    statuses: list[int]
    spans: list[ReceivedSpan]
    raw_bodies: list[bytes]
    rows: list[dict[str, Any]]
    returncode: Optional[int]
    stderr: str

    def span(self, path: str) -> ReceivedSpan:
        (found,) = [span for span in self.spans if _path(span) == path]
        return found


VARIANTS = {
    "gunicorn": (GUNICORN, False),
    "gunicorn-gthread+contrib-flask": ([*GUNICORN[:1], "--threads", "4", *GUNICORN[1:]], True),
    "flask-run+contrib-flask": (
        ["flask", "--app", "flask_app", "run", "--host", "{host}", "--port", "{port}"],
        True,
    ),
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server of ``VARIANTS`` through ``SESSION``, then SIGTERM."""
    name = request.param
    command, contrib_flask = VARIANTS[name]
    app_dir = tmp_path_factory.mktemp(name)
    (app_dir / "flask_app.py").write_text(EXAMPLE.read_text())
    database = app_dir / "analytics.db"
    with OTLPReceiver() as receiver:
        env = {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.traces_endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_PYTHON_USER_TRACKING_SINKS": f"sqlite:///{database}",
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "" if contrib_flask else "flask",
        }
        server = UvicornServer("", cwd=app_dir, env=env, host=SERVER_HOST, instrument=CLI, command=command)
        server.start()
        try:
            statuses = _drive(server.url)
            receiver.wait_for(lambda r: len(r.spans(kind="SERVER")) >= len(SESSION), timeout=15)
        finally:
            returncode = server.stop(signal.SIGTERM)
        spans = receiver.spans()
        bodies = receiver.raw_bodies()
    with contextlib.closing(sqlite3.connect(database)) as db:
        db.row_factory = sqlite3.Row
        rows = [dict(row) for row in db.execute("SELECT * FROM events ORDER BY ts_us")]
    yield Served(name, contrib_flask, statuses, spans, bodies, rows, returncode, server.stderr)


def _drive(url: str) -> list[int]:
    cookie = ""
    statuses = []
    for method, path, logged_in, _ in SESSION:
        headers = {"Cookie": cookie} if logged_in and cookie else {}
        body = b"username=ann&password=s3cret" if path == "/login" else None
        if body is not None:
            headers.update(FORM)
        status, response_headers, _ = http_request(method, url + path, headers, CLIENT_HOST, body=body)
        cookie = response_headers.get("set-cookie", "").split(";", 1)[0] or cookie
        statuses.append(status)
    return statuses


def _path(span: ReceivedSpan) -> str:
    target = span.attributes.get("url.path") or span.attributes.get("http.target") or ""
    return str(target).split("?", 1)[0]


def test_every_request_is_served_and_the_server_exits_cleanly(served: Served) -> None:
    """The instrumented server answers the session as the app would, and stops on SIGTERM."""
    assert served.statuses == [status for *_, status in SESSION], served.stderr
    assert served.returncode in (0, -signal.SIGTERM), served.stderr
    assert "otel_user_tracking:" not in served.stderr, served.stderr  # no internal error logged


def test_one_server_span_per_request_and_no_other_span(served: Served) -> None:
    """Exactly one SERVER span per request, whichever layers are active, and no other span."""
    server_spans = [span for span in served.spans if span.kind == "SERVER"]
    assert sorted(map(_path, server_spans)) == sorted(path for _, path, *_ in SESSION)
    assert [span for span in served.spans if span.kind != "SERVER"] == []
    expected_scope = "opentelemetry.instrumentation.flask" if served.contrib_flask else "otel_user_tracking"
    assert {span.scope for span in server_spans} == {expected_scope}


def test_spans_are_named_by_route_template(served: Served) -> None:
    """Requests are named by Flask's rule; an unmatched 404 by its method (ours) or as contrib does."""
    assert served.span("/books/7").name == "GET /books/<int:pk>"
    assert served.span("/books/99").name == "GET /books/<int:pk>"
    assert served.span("/books/7").attributes["http.route"] == "/books/<int:pk>"
    assert served.span("/login").name == "POST /login"
    unmatched = served.span("/no/such/page")
    assert "http.route" not in unmatched.attributes
    assert unmatched.name == ("GET /no/such/page" if served.contrib_flask else "GET")


def test_the_flask_login_user_is_on_the_requests_that_loaded_it(served: Served) -> None:
    """After a real login, spans of views that used current_user carry user.*; /about, which never
    touched it, carries none (its user loader was not called for it), nor does /boom."""
    for path in ("/books/7", "/books/8", "/checkout"):
        attributes = served.span(path).attributes
        assert (attributes.get("user.id"), attributes.get("user.name")) == ("user-1", "ann"), path
        assert attributes.get("user.roles") == ["reader"], path
    for path in ("/about", "/boom"):
        assert not [key for key in served.span(path).attributes if key.startswith("user.")], path


def test_one_exception_event_for_unhandled_and_error_handler_500s(served: Served) -> None:
    """An unhandled exception (Flask's own 500) and one an errorhandler answered with a 502 are one
    exception event each; a 404 is none."""
    for path, kind in (("/boom", "RuntimeError"), ("/checkout", "PaymentError")):
        span = served.span(path)
        (event,) = span.events_named("exception")
        assert str(event.attributes["exception.type"]).endswith(kind), path
        assert span.status_code == "ERROR", path
    assert served.span("/books/99").events_named("exception") == []


def test_the_client_address_never_leaves_the_process(served: Served) -> None:
    """No exported byte holds the client's address (the policy's default: ip=drop)."""
    assert served.raw_bodies
    assert not [body for body in served.raw_bodies if CLIENT_HOST.encode() in body]


def test_the_store_has_a_pageview_per_request_and_the_errors_after_sigterm(served: Served) -> None:
    """Every completed request is one pageview in the store (queued events survive SIGTERM), with
    the route as its page and the user, and each 5xx exception is one analytics error."""
    pageviews = [row for row in served.rows if row["type"] == "pageview"]
    assert sorted(row["path"] for row in pageviews) == sorted(path for _, path, *_ in SESSION), served.stderr
    books = [row for row in pageviews if row["path"] == "/books/7"]
    assert [(row["page"], row["user_id"], row["status_code"]) for row in books] == [
        ("/books/<int:pk>", "user-1", 200)
    ]
    errors = sorted(row["error_type"].rsplit(".", 1)[-1] for row in served.rows if row["type"] == "error")
    assert errors == ["PaymentError", "RuntimeError"]
    assert CLIENT_HOST not in repr(served.rows)
