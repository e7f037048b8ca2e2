"""Requests that matched no route share one page in the store and the report; paths stay apart."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import otel_user_tracking as out
from otel_user_tracking.analytics.events import AnalyticsEvent
from otel_user_tracking.store.report import build_report

from ._apps import get_all, instrumented, new_tracing

SCANNED = 300


async def item(request: Request) -> PlainTextResponse:
    if request.path_params["n"] == "missing":
        return PlainTextResponse("no such item", status_code=404)
    return PlainTextResponse(request.path_params["n"])


@pytest.fixture
def store_of_requests(tmp_path: Path) -> Iterator[Path]:
    """A store fed by an instrumented Starlette app: 3 routed pages, 1 routed 404, many scanner 404s."""
    database = tmp_path / "a.db"
    tracing = new_tracing()
    processor = out.AnalyticsSpanProcessor(sinks=[out.sinks.SQLiteSink(database)], flush_interval=60)
    tracing.provider.add_span_processor(processor)
    app = Starlette(routes=[Route("/items/{n}", item)])
    paths = ["/items/1", "/items/2", "/items/3", "/items/missing"]
    paths += [f"/wp-admin/{n}.php" for n in range(SCANNED)] + ["/.env"]
    with instrumented(tracing):
        responses = get_all(app, paths, {"user-agent": "Mozilla/5.0"})
    assert [r.status_code for r in responses] == [200] * 3 + [404] * (SCANNED + 2)
    assert processor.force_flush(10_000)
    processor.shutdown()
    yield database


def test_many_distinct_404_paths_are_one_page_in_the_report(store_of_requests: Path) -> None:
    """300 scanner paths that matched no route are one report row (page ``GET``), not 300."""
    report = build_report(store_of_requests, datetime.now(timezone.utc) - timedelta(hours=1), limit=1000)
    assert {row.page: row.pageviews for row in report.routes} == {"/items/{n}": 4, "GET": SCANNED + 1}


def test_an_unmatched_request_keeps_its_raw_path(store_of_requests: Path) -> None:
    """The shared page loses nothing: each unmatched request's path is in its own column."""
    with contextlib.closing(sqlite3.connect(store_of_requests)) as db:
        rows = db.execute("SELECT path, route FROM events WHERE page = 'GET'").fetchall()
        routed_404 = db.execute("SELECT page FROM events WHERE path = '/items/missing'").fetchall()
    scanned = [f"/wp-admin/{n}.php" for n in range(SCANNED)] + ["/.env"]
    assert sorted(path for path, _ in rows) == sorted(scanned)
    assert {route for _, route in rows} == {None}
    assert routed_404 == [("/items/{n}",)]  # a 404 of a matched route keeps its route's page


@pytest.mark.parametrize(
    ("fields", "page"),
    [
        ({"method": "GET", "path": "/x", "status_code": 404}, "GET"),
        ({"method": "POST", "path": "/x", "status_code": 404}, "POST"),
        ({"method": "_OTHER", "path": "/x", "status_code": 404}, "HTTP"),
        ({"method": "GET", "path": "/x", "route": "/{p}", "status_code": 404}, "/{p}"),
        ({"method": "GET", "path": "/x", "status_code": 200}, "/x"),
        ({"method": "GET", "path": "/x", "status_code": 500}, "/x"),
    ],
)
def test_an_event_built_in_code_gets_the_same_page(fields: dict[str, object], page: str) -> None:
    """``AnalyticsEvent`` picks the page by the conversion's rule: route, else method for a 404, else path."""
    assert AnalyticsEvent("pageview", "0" * 32, "0" * 16, **fields).page == page
