"""Bots', monitors' and scripts' requests: ``filtered`` events for the store, never pageviews or remote."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import otel_user_tracking as out
from otel_user_tracking.sinks import InMemorySink

from ._apps import Tracing, client, fastapi_app, get, instrumented, new_tracing

GOOGLEBOT = {"user-agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"}
SAFARI = {
    "user-agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15"
}


class Sinks:
    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing
        self.store_like, self.remote_like = InMemorySink(filtered=True), InMemorySink()
        self.processor = out.AnalyticsSpanProcessor(
            sinks=[self.store_like, self.remote_like], flush_interval=60
        )
        tracing.provider.add_span_processor(self.processor)

    def flushed(self) -> tuple[list[out.AnalyticsEvent], list[out.AnalyticsEvent]]:
        assert self.processor.force_flush(10_000)
        return self.store_like.events, self.remote_like.events


@pytest.fixture
def sinks(request: pytest.FixtureRequest) -> Iterator[Sinks]:
    options = getattr(request, "param", {})
    setup = Sinks(new_tracing())
    try:
        with instrumented(setup.tracing, **options):
            yield setup
    finally:
        setup.processor.shutdown()


def test_a_crawler_s_request_is_a_filtered_event_only_sinks_that_take_them_get(sinks: Sinks) -> None:
    """Googlebot: a ``filtered`` event named ``bot`` for the store-like sink, nothing for the other;
    a person's request is a pageview for both, with its device."""
    app = fastapi_app(sinks.tracing)
    get(app, "/public", headers=GOOGLEBOT)
    get(app, "/public?q=1", headers={**SAFARI, "referer": "https://example.org/"})
    stored, remote = sinks.flushed()
    assert [(event.type, event.name) for event in stored] == [("filtered", "bot"), ("pageview", None)]
    assert [event.type for event in remote] == ["pageview"]
    bot, person = stored
    assert (bot.client, bot.browser, bot.device_type, bot.page, bot.status_code) == (
        "bot",
        "Googlebot",
        "bot",
        "/public",
        200,
    )
    assert (bot.path, bot.client_address, bot.visitor_id) == (None, None, None)
    assert (person.client, person.browser, person.os, person.device_type) == (
        "browser",
        "Safari",
        "Mac OS X",
        "desktop",
    )
    assert remote[0] == person


@pytest.mark.parametrize("sinks", [{"ignore_bots": False}], indirect=True)
def test_with_ignore_bots_off_a_crawler_makes_a_pageview_of_its_class(sinks: Sinks) -> None:
    """``ignore_bots=False``: Googlebot's request is a pageview (client ``bot``), nothing is filtered."""
    get(fastapi_app(sinks.tracing), "/public", headers=GOOGLEBOT)
    stored, remote = sinks.flushed()
    assert [(event.type, event.client) for event in stored] == [("pageview", "bot")]
    assert remote == stored


def test_a_monitor_s_head_request_is_neither_a_pageview_nor_filtered(sinks: Sinks) -> None:
    """A HEAD is no pageview whoever sends it, so it is not counted as filtered either: the filtered
    count is what would have been pageviews with ``ignore_bots`` off."""
    app = fastapi_app(sinks.tracing)
    monitor = {"user-agent": "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)"}
    get(app, "/public", headers=monitor)
    assert [event.name for event in sinks.flushed()[0]] == ["monitor"]

    async def head() -> None:
        async with client(app) as http:
            await http.head("/public", headers=monitor)

    asyncio.run(head())
    assert [event.name for event in sinks.flushed()[0]] == ["monitor"]
