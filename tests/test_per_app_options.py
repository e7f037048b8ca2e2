"""Options given to one app's ``UserTrackingMiddleware`` decide that app's analytics, not the global ones."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import otel_user_tracking as out
from otel_user_tracking.analytics.events import AnalyticsEvent

from ._apps import Tracing, new_tracing

CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
CURL = "curl/8.5.0"


class Setup:
    """A provider with the analytics processor to an in-memory sink, and apps wrapped by hand."""

    def __init__(self) -> None:
        self.tracing: Tracing = new_tracing()
        self.sink = out.sinks.InMemorySink()
        self.processor = out.AnalyticsSpanProcessor(sinks=[self.sink], flush_interval=60)
        self.tracing.provider.add_span_processor(self.processor)

    def app(self, **options: Any) -> out.UserTrackingMiddleware:
        async def page(request: Request) -> PlainTextResponse:
            return PlainTextResponse("ok")

        inner = Starlette(routes=[Route("/p", page, methods=["GET", "HEAD", "POST"])])
        return out.UserTrackingMiddleware(inner, tracer_provider=self.tracing.provider, **options)

    def pageviews(self) -> list[AnalyticsEvent]:
        assert self.processor.force_flush(10_000)
        return [event for event in self.sink.events if event.type == "pageview"]


@pytest.fixture
def setup() -> Iterator[Setup]:
    made = Setup()
    yield made
    made.tracing.provider.shutdown()


def _request(app: Any, method: str = "GET", **headers: str) -> None:
    async def go() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.example") as client:
            response = await client.request(method, "/p", headers=headers)
            assert response.status_code == 200

    asyncio.run(go())


def test_the_issue_example_a_rejecting_filter_and_bots_kept_for_one_app(setup: Setup) -> None:
    """``pageview_filter=lambda e: False, ignore_bots=False`` on one app: no browser pageview, a curl one."""
    app = setup.app(pageview_filter=lambda event: False, ignore_bots=False)
    _request(app, **{"user-agent": CHROME})
    assert setup.pageviews() == []
    app = setup.app(ignore_bots=False)
    _request(app, **{"user-agent": CURL})
    assert [event.user_agent for event in setup.pageviews()] == [CURL]


@pytest.mark.parametrize(
    ("options", "method", "headers", "counted"),
    [
        ({}, "GET", {"user-agent": CURL}, False),
        ({"ignore_bots": False}, "GET", {"user-agent": CURL}, True),
        ({}, "HEAD", {"user-agent": CHROME}, False),
        ({"pageview_methods": ["GET", "HEAD"]}, "HEAD", {"user-agent": CHROME}, True),
        ({"pageview_methods": ["POST"]}, "GET", {"user-agent": CHROME}, False),
        ({"pageview_filter": lambda e: e.path != "/p"}, "GET", {"user-agent": CHROME}, False),
    ],
    ids=["bots-ignored", "bots-kept", "head-default", "head-allowed", "get-excluded", "filter"],
)
def test_each_pageview_rule_applies_per_app(
    setup: Setup, options: dict[str, Any], method: str, headers: dict[str, str], counted: bool
) -> None:
    """ignore_bots, pageview_methods and pageview_filter given to one app decide its pageviews."""
    _request(setup.app(**options), method, **headers)
    assert len(setup.pageviews()) == (1 if counted else 0)


def test_privacy_signals_per_app(setup: Setup) -> None:
    """``honor_privacy_signals=False`` on one app keeps the visitor id of its Sec-GPC requests."""
    _request(setup.app(), **{"user-agent": CHROME, "sec-gpc": "1"})
    _request(setup.app(honor_privacy_signals=False), **{"user-agent": CHROME, "sec-gpc": "1"})
    honoured, ignored = setup.pageviews()
    assert honoured.visitor_id is None and ignored.visitor_id is not None


def test_two_apps_on_one_provider_keep_their_own_rules(setup: Setup) -> None:
    """Two apps with opposite options, one processor: each request follows its own app's rules."""
    keeps_bots, drops_bots = setup.app(ignore_bots=False), setup.app(ignore_bots=True)
    for app in (keeps_bots, drops_bots, keeps_bots):
        _request(app, **{"user-agent": CURL})
    assert len(setup.pageviews()) == 2


def test_the_global_configuration_applies_where_an_app_gave_no_option(setup: Setup) -> None:
    """``configure(ignore_bots=False)`` counts bots in apps that did not say otherwise."""
    out.configure(ignore_bots=False)
    _request(setup.app(), **{"user-agent": CURL})
    _request(setup.app(ignore_bots=True), **{"user-agent": CURL})
    assert len(setup.pageviews()) == 1
