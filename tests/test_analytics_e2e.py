"""Analytics from a real uvicorn under the real `opentelemetry-instrument`, into the SQLite store."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import textwrap
from pathlib import Path

from ._cli import report_json
from ._uvicorn import CLIENT_HOST, SERVER_HOST, UvicornServer, app_with_store, request

APP = textwrap.dedent(
    """
    from fastapi import Depends, FastAPI, Header, HTTPException

    import otel_user_tracking as out

    app = FastAPI()


    def login(authorization: str = Header(default="")) -> str:
        if authorization != "Bearer demo":
            raise HTTPException(401, "login required")
        out.set_user(id="user-42", email="jane@example.com")
        return "user-42"


    @app.get("/products/{product_id}")
    def product(product_id: int) -> dict:
        return {"id": product_id}


    @app.post("/checkout")
    def checkout(user: str = Depends(login)) -> dict:
        out.track("CHECKOUT_COMPLETED", meta={"plan": "pro"})
        return {"ok": True}


    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("kaboom")
    """
)
BROWSER = {
    "User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5",
    "Accept-Language": "de-DE,de;q=0.9",
}
CLI = ["--traces_exporter", "console", "--metrics_exporter", "none", "--logs_exporter", "none"]


def test_sigterm_loses_no_queued_event_and_the_report_reads_them(tmp_path: Path) -> None:
    """Events still queued (5 s batch interval) reach the store when uvicorn gets SIGTERM."""
    database, env = app_with_store(tmp_path, APP, OTEL_PYTHON_USER_TRACKING_EMAIL="mask")
    server = UvicornServer("app:app", cwd=tmp_path, env=env, host=SERVER_HOST, instrument=CLI).start()
    try:
        statuses = [
            request("GET", f"{server.url}/products/{n}?utm_source=newsletter", BROWSER, CLIENT_HOST)[0]
            for n in range(7)
        ]
        statuses.append(
            request("POST", f"{server.url}/checkout", {**BROWSER, "Authorization": "Bearer demo"})[0]
        )
        statuses.append(request("GET", f"{server.url}/boom", BROWSER)[0])
    finally:
        server.stop(signal.SIGTERM)
    assert statuses == [200] * 8 + [500], server.stderr
    with contextlib.closing(sqlite3.connect(database)) as db:
        rows = db.execute("SELECT type, page, name, user_id, user_email, error_type FROM events").fetchall()
    pageviews = [row for row in rows if row[0] == "pageview"]
    assert len(pageviews) == 9, (rows, server.stderr)
    assert [row[1] for row in pageviews].count("/products/{product_id}") == 7
    assert [(row[2], row[3]) for row in rows if row[0] == "custom"] == [("CHECKOUT_COMPLETED", "user-42")]
    assert [row[5] for row in rows if row[0] == "error"] == ["RuntimeError"]
    assert "jane@example.com" not in repr(rows)  # the email policy (mask) holds in the store

    data = report_json(database)
    assert (data["pageviews"], data["errors"], data["custom_events"]) == (9, 1, 1)
    assert data["routes"][0] == {"page": "/products/{product_id}", "pageviews": 7, "visitors": 1}
    assert data["utm_sources"] == [{"value": "newsletter", "count": 7}]
    assert data["locales"] == [{"value": "de-DE", "count": 9}]
    assert data["error_types"][0]["error_type"] == "RuntimeError"


def test_cli_counts_every_request_while_the_sampler_exports_none(tmp_path: Path) -> None:
    """Under the CLI the sampler is wrapped: OTEL_TRACES_SAMPLER=always_off, all pageviews stored."""
    database, env = app_with_store(tmp_path, APP, OTEL_TRACES_SAMPLER="always_off")
    server = UvicornServer("app:app", cwd=tmp_path, env=env, instrument=CLI).start()
    try:
        for n in range(5):
            request("GET", f"{server.url}/products/{n}", BROWSER)
    finally:
        server.stop(signal.SIGTERM)
    with contextlib.closing(sqlite3.connect(database)) as db:
        assert db.execute("SELECT COUNT(*) FROM events WHERE type = 'pageview'").fetchone()[0] == 5
    assert '"trace_id"' not in server.stdout, server.stdout  # the console exporter printed no span
