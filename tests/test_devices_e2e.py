"""Devices and filtered requests through a real uvicorn under ``opentelemetry-instrument``, into the store."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

from ._cli import report_json
from ._uvicorn import CLIENT_HOST, SERVER_HOST, UvicornServer, app_with_store, request

APP = textwrap.dedent(
    """
    from fastapi import FastAPI

    app = FastAPI()


    @app.get("/api/items/{item_id}")
    def item(item_id: int) -> dict:
        return {"id": item_id}
    """
)
CLI = ["--traces_exporter", "none", "--metrics_exporter", "none", "--logs_exporter", "none"]
# An Android app's API calls, an iPhone's Safari, and what is not a person.
PEOPLE = {
    "okhttp/4.12.0": ("app", "okhttp", None, "mobile", 4),
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Mobile/15E148 Safari/604.1": ("browser", "Mobile Safari", "iOS", "mobile", 2),
}
NOT_PEOPLE = {
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)": ("bot", 3),
    "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)": ("monitor", 2),
    "python-httpx/0.27.2": ("script", 1),
}


def test_an_app_s_requests_are_pageviews_and_a_crawler_s_are_counted_as_filtered(tmp_path: Path) -> None:
    """okhttp and Safari make pageviews with their device; Googlebot, UptimeRobot and httpx make
    none, and the report counts each class's requests as filtered."""
    database, env = app_with_store(tmp_path, APP)
    server = UvicornServer("app:app", cwd=tmp_path, env=env, host=SERVER_HOST, instrument=CLI).start()
    try:
        sent = {
            **{agent: spec[-1] for agent, spec in PEOPLE.items()},
            **{a: n for a, (_, n) in NOT_PEOPLE.items()},
        }
        statuses = [
            request("GET", f"{server.url}/api/items/{n}", {"User-Agent": agent}, CLIENT_HOST)[0]
            for agent, count in sent.items()
            for n in range(count)
        ]
    finally:
        server.stop(signal.SIGTERM)
    assert statuses == [200] * sum(sent.values()), server.stderr
    with contextlib.closing(sqlite3.connect(database)) as db:
        rows = db.execute(
            "SELECT type, name, client, browser, os, device_type, user_agent, client_address, "
            "visitor_id, path FROM events"
        ).fetchall()
    pageviews = Counter((row[2], row[3], row[4], row[5]) for row in rows if row[0] == "pageview")
    assert pageviews == {spec[:4]: spec[-1] for spec in PEOPLE.values()}, (rows, server.stderr)
    filtered = [row for row in rows if row[0] == "filtered"]
    assert Counter(row[1] for row in filtered) == {client: n for client, n in NOT_PEOPLE.values()}
    assert all(
        row[7] is None and row[8] is None and row[9] is None for row in filtered
    )  # no address, visitor, path

    data = report_json(database)
    assert data["pageviews"] == 6
    assert data["filtered"] == [
        {"client": "bot", "requests": 3},
        {"client": "monitor", "requests": 2},
        {"client": "script", "requests": 1},
    ]
    # Visitors are left out: the first requests may come before the store's day salt is read.
    assert [{k: v for k, v in row.items() if k != "visitors"} for row in data["devices"]] == [
        {"device_type": "mobile", "browser": "okhttp", "os": "unknown", "pageviews": 4},
        {"device_type": "mobile", "browser": "Mobile Safari", "os": "iOS", "pageviews": 2},
    ]
    table = subprocess.run(
        [sys.executable, "-m", "otel_user_tracking", "report", str(database)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "filtered requests 6" in table
    assert "Devices (pageviews)" in table and "Filtered requests (not pageviews" in table
    assert [
        line.split()
        for line in table.splitlines()
        if line.strip().startswith(("bot ", "monitor ", "script "))
    ] == [
        ["bot", "3"],
        ["monitor", "2"],
        ["script", "1"],
    ]
