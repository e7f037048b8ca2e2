"""Stored markup in Chromium: every text column of the store holds script, handlers, ``javascript:``
URLs and SVG, and the live page and a journey show them as text, run nothing, open no dialog and
fetch nothing from another origin (headless Chromium over the DevTools protocol)."""

from __future__ import annotations

import asyncio
import json
import typing
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from otel_user_tracking.analytics.events import FIELDS, EventRecord, to_us
from otel_user_tracking.store.dashboard import DashboardServer, PageOptions
from otel_user_tracking.store.sqlite import schema as store

from ._chromium import DevTools, chromium, chromium_binary
from ._dashboard import NOW, running

pytestmark = pytest.mark.skipif(
    chromium_binary() is None, reason="chromium not installed (.ci/run installs it)"
)

JAEGER = "http://jaeger.example.test:16686"
MARKUP = (
    "<script>window.__pwned=1;alert(1)</script><img src=https://evil.example/i onerror=alert(2)>"
    '"><svg onload=alert(3)><a href="javascript:alert(4)">x</a></svg>'
    "' onmouseover='alert(5)' <iframe src=https://evil.example/f></iframe>"
    '<meta http-equiv="refresh" content="0;url=https://evil.example/r">'
    "<link rel=stylesheet href=https://evil.example/c.css><style>body{background:url(https://evil.example/b)}</style>"
    "javascript:alert(6)"
)
TEXT_COLUMNS = tuple(
    field
    for field, hint in typing.get_type_hints(EventRecord).items()
    if field not in ("type", "meta_json") and str in (hint, *typing.get_args(hint))
)
# Columns the page shows (the others are stored but never rendered), with the markup as text.
SHOWN = ("page", "referrer", "locale", "utm_source", "utm_campaign", "name", "error_type", "error_message")

READ = """JSON.stringify({
  text: document.body.textContent,
  foreign: [...document.querySelectorAll(
    'body script,body iframe,body object,body embed,body img,body style,body link,body meta,body base')]
    .map(e => e.outerHTML.slice(0, 80)).concat(
      [...document.querySelectorAll('body *')].filter(e => [...e.attributes].some(a => /^on/i.test(a.name)))
        .map(e => e.tagName)),
  refreshes: [...document.querySelectorAll('meta[http-equiv]')].map(m => m.content),
  svgs: document.querySelectorAll('svg').length,
  charts: document.querySelectorAll('svg.chart').length,
  hrefs: [...document.querySelectorAll('[href]')].map(e => e.getAttribute('href')),
  actions: [...document.querySelectorAll('form')].map(f => f.getAttribute('action')),
  pwned: typeof window.__pwned,
  steps: [...document.querySelectorAll('#journey-steps tbody tr')].map(r => r.cells[2].textContent),
})"""

OPEN_WHO = "document.querySelector('#errors form.journey').requestSubmit(); true"


def _rows() -> list[EventRecord]:
    ts_us = to_us(NOW - timedelta(hours=1))
    rows = []
    for index, kind in enumerate(("pageview", "error", "custom")):
        values: dict[str, Any] = {column: f"{column}:{MARKUP}" for column in TEXT_COLUMNS}
        values.update(
            event_id=f"{index}:{MARKUP}",
            type=kind,
            ts_us=ts_us + index,
            status_code=500,
            duration_ms=1.0,
            meta_json=json.dumps({f"key:{MARKUP}": MARKUP}),
        )
        rows.append(EventRecord(*(values.get(field) for field in FIELDS)))
    return rows


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    path = tmp_path_factory.mktemp("markup") / "markup.db"
    db = store.connect(path)
    try:
        db.execute("BEGIN")
        db.executemany(store.INSERT, _rows())
        db.execute("COMMIT")
    finally:
        db.close()
    options = PageOptions(jaeger_url=JAEGER, since_text="2000-01-01", refresh_seconds=3600, live=True)
    with running(DashboardServer(path, port=0, options=options)) as server:
        yield server


async def _browse(ws_url: str, url: str) -> dict[str, Any]:
    async with DevTools.connect(ws_url) as page:
        await page.call("Page.enable")
        await page.call("Network.enable")
        await page.call("Runtime.enable")
        await page.navigate(url)
        dashboard = json.loads(await page.evaluate(READ))
        mark = len(page.events)
        await page.evaluate(OPEN_WHO)
        await page.wait_for("Page.loadEventFired", after=mark)
        journey = json.loads(await page.evaluate(READ))
        methods = [event["method"] for event in page.events]
        return {
            "dashboard": dashboard,
            "journey": journey,
            "requests": page.requested_urls(),
            "events": methods,
        }


@pytest.fixture(scope="module")
def browsed(server: DashboardServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    with chromium(tmp_path_factory.mktemp("chromium-markup")) as ws_url:
        return asyncio.run(_browse(ws_url, server.url))


def test_every_text_column_holds_the_markup() -> None:
    """The store under test covers every text column of an event (so a new column is covered too)."""
    assert {"page", "path", "query", "user_agent", "user_email", "error_stacktrace"} <= set(TEXT_COLUMNS)
    assert len(TEXT_COLUMNS) >= 24


@pytest.mark.parametrize("view", ["dashboard", "journey"])
def test_stored_markup_is_shown_as_text(browsed: dict[str, Any], view: str) -> None:
    """Markup from every shown column is the page's text; no element or handler of it exists."""
    page = browsed[view]
    assert page["foreign"] == [] and page["pwned"] == "undefined"
    assert page["refreshes"] == [
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; base-uri 'none'",
        "3600",
    ]
    assert page["svgs"] == page["charts"] > 0
    assert all(href == "data:," or href.startswith(f"{JAEGER}/trace/") for href in page["hrefs"])
    assert set(page["actions"]) == {"/journey"}
    shown = SHOWN if view == "dashboard" else ("error_type", "name")
    for column in shown:
        assert f"{column}:{MARKUP}" in page["text"], column


def test_the_journey_of_a_markup_id_shows_its_steps(browsed: dict[str, Any]) -> None:
    """The errors table's button finds the person by their stored (markup) id: all three events."""
    steps = browsed["journey"]["steps"]
    assert steps == [f"method:{MARKUP} page:{MARKUP}", f"error_type:{MARKUP}", f"name:{MARKUP}"]


def test_no_script_ran_no_dialog_opened_nothing_foreign_was_fetched(
    browsed: dict[str, Any], server: DashboardServer
) -> None:
    """No dialog, no console call, no request beyond the dashboard itself (the page, the posted form)."""
    assert "Page.javascriptDialogOpening" not in browsed["events"]
    assert "Runtime.consoleAPICalled" not in browsed["events"]
    requests = browsed["requests"]
    assert requests and [url for url in requests if not url.startswith((server.url, "data:"))] == []
