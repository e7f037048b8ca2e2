"""What becomes an analytics event: pageviews, errors, custom events, and what they carry."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any, Optional

import pytest
from fastapi import Depends
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

import otel_user_tracking as out
from otel_user_tracking.analytics.conversion import convert_span

from ._apps import (
    Analytics,
    Tracing,
    bearer,
    client,
    fastapi_app,
    get,
    instrumented,
    instrumented_analytics,
    login,
)

CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
BROWSER = {"user-agent": CHROME}


@pytest.fixture
def analytics() -> Iterator[Analytics]:
    with instrumented_analytics() as setup:
        yield setup


def _with_track(tracing: Tracing) -> Any:
    app = fastapi_app(tracing)

    @app.post("/checkout")
    def checkout(user: dict[str, Any] = Depends(login)) -> dict[str, bool]:
        out.track("CHECKOUT_COMPLETED", meta={"plan": "pro", "seats": 3, "trial": False})
        out.track("Item Purchased", meta={"sku": "A-1"})
        return {"ok": True}

    return app


def _post(app: Any, path: str, headers: dict[str, str]) -> None:
    async def go() -> None:
        async with client(app) as c:
            await c.post(path, headers=headers)

    asyncio.run(go())


def test_pageview_carries_route_template_request_facts_and_policy_user(analytics: Analytics) -> None:
    """One pageview per request: FastAPI route template, method, status, duration, user, visitor."""
    get(fastapi_app(analytics.tracing), "/users/7", headers={**bearer("tok-bob"), **BROWSER})
    [pageview] = analytics.events()
    span = analytics.tracing.server_span("/users/7")
    assert pageview.type == "pageview"
    assert (pageview.route, pageview.path) == ("/users/{user_id}", "/users/7")
    assert pageview.page == "/users/{user_id}"
    assert (pageview.method, pageview.status_code) == ("GET", 200)
    assert pageview.duration_ms is not None and pageview.duration_ms > 0
    assert (pageview.user_id, pageview.user_name, pageview.user_email) == ("u-7", "Bob", "bob@example.org")
    assert pageview.user_agent == CHROME
    assert pageview.visitor_id and pageview.visitor_id == span.attributes["user_tracking.visitor_id"]
    assert pageview.trace_id == format(span.context.trace_id, "032x")
    assert pageview.span_id == format(span.context.span_id, "016x")
    assert pageview.host == "testserver" and pageview.url == "http://testserver/users/7"


def test_starlette_route_template_becomes_the_page(analytics: Analytics) -> None:
    """A plain Starlette route's path template, not the concrete path, is recorded as the pageview's route."""

    async def item(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.path_params["item_id"])

    app = Starlette(routes=[Route("/items/{item_id}", item)])
    get(app, "/items/abc", headers=BROWSER)
    [pageview] = analytics.events("pageview")
    assert (pageview.route, pageview.path) == ("/items/{item_id}", "/items/abc")


def test_utm_locale_referrer_and_scrubbed_query(analytics: Analytics) -> None:
    """UTM tags come from the query, the locale from Accept-Language; secrets never leave."""
    headers = {
        **BROWSER,
        "accept-language": "fr-CH, fr;q=0.9, en;q=0.8",
        "referer": "https://news.example/post?id=3&access_token=hunter2",
    }
    query = "utm_source=newsletter&utm_medium=email&utm_campaign=launch&reset_token=s3cr3t&password=pw123"
    get(fastapi_app(analytics.tracing), f"/public?{query}", headers=headers)
    [pageview] = analytics.events()
    utm = (pageview.utm_source, pageview.utm_medium, pageview.utm_campaign)
    assert utm == ("newsletter", "email", "launch")
    assert pageview.locale == "fr-CH"
    assert pageview.referrer is not None and pageview.referrer.startswith("https://news.example/post?id=3")
    dumped = repr(pageview.to_dict()) + repr(dict(analytics.tracing.server_span("/public").attributes))
    for secret in ("hunter2", "s3cr3t", "pw123"):
        assert secret not in dumped
    assert pageview.query is not None and "reset_token=REDACTED" in pageview.query


def test_utm_term_and_content_are_read_like_the_other_utm_tags(analytics: Analytics) -> None:
    """utm_term and utm_content come from the query as the other UTM tags: decoded, first non-empty value."""
    query = "utm_term=running+shoes&utm_content=&utm_content=banner%2Fa&utm_term=second"
    get(fastapi_app(analytics.tracing), f"/public?{query}", headers=BROWSER)
    [pageview] = analytics.events()
    assert (pageview.utm_term, pageview.utm_content) == ("running shoes", "banner/a")
    assert (pageview.utm_source, pageview.utm_medium, pageview.utm_campaign) == (None, None, None)


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ({"service.name": "shop", "deployment.environment.name": "prod", "deployment.environment": "old"},
         ("shop", "prod")),
        ({"service.name": "shop", "deployment.environment": "staging"}, ("shop", "staging")),
        ({"service.name": "shop"}, ("shop", None)),
    ],
)  # fmt: skip
def test_events_carry_the_resources_service_and_environment(
    resource: dict[str, str], expected: tuple[str, Optional[str]]
) -> None:
    """Every event holds its span's Resource's service.name and deployment environment
    (``deployment.environment.name``, else the older ``deployment.environment``)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(resource))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    setup = Analytics(Tracing(provider, exporter))
    try:
        with instrumented(setup.tracing):
            get(fastapi_app(setup.tracing), "/boom", headers={**bearer("tok-jane"), **BROWSER})
        events = setup.events()
    finally:
        setup.processor.shutdown()
    assert {event.type for event in events} == {"pageview", "error"}
    assert {(event.service_name, event.deployment_environment) for event in events} == {expected}


def test_unhandled_exception_becomes_one_error_event(analytics: Analytics) -> None:
    """An unhandled exception yields exactly one error event (type, message, stack) beside a 500 pageview."""
    get(fastapi_app(analytics.tracing), "/boom", headers={**bearer("tok-jane"), **BROWSER})
    events = analytics.events()
    errors = [event for event in events if event.type == "error"]
    [pageview] = [event for event in events if event.type == "pageview"]
    assert len(errors) == 1, events
    [error] = errors
    assert (error.error_type, error.error_message) == ("RuntimeError", "kaboom")
    assert error.error_stacktrace is not None and "kaboom" in error.error_stacktrace
    assert (error.route, error.user_id, error.trace_id) == ("/boom", "42", pageview.trace_id)
    assert pageview.status_code == 500 and error.event_id != pageview.event_id


def test_track_makes_custom_events_and_span_events(analytics: Analytics) -> None:
    """track() makes one custom event per call, with its meta and the request's user, and a span event."""
    _post(_with_track(analytics.tracing), "/checkout", {**bearer("tok-bob"), **BROWSER})
    custom = analytics.events("custom")
    assert [(event.name, dict(event.meta)) for event in custom] == [
        ("CHECKOUT_COMPLETED", {"plan": "pro", "seats": 3, "trial": False}),
        ("Item Purchased", {"sku": "A-1"}),
    ]
    assert all(event.user_id == "u-7" and event.route == "/checkout" for event in custom)
    span_events = [event.name for event in analytics.tracing.server_span("/checkout").events]
    assert span_events == ["CHECKOUT_COMPLETED", "Item Purchased"]


@pytest.mark.parametrize(
    ("name", "meta", "message"),
    [
        ("", None, "1 to 256"),
        ("x" * 257, None, "1 to 256"),
        ("bad\nname", None, "control characters"),
        ("OK", {"nested": {"a": 1}}, "use str, int, float or bool"),
    ],
)
def test_track_rejects_bad_names_and_meta_at_the_call(name: str, meta: Any, message: str) -> None:
    """track() raises ValueError at the call for a bad name or meta, saying what is allowed."""
    with pytest.raises(ValueError, match=message):
        out.track(name, meta=meta)


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS"])
def test_head_and_options_make_no_pageview(analytics: Analytics, method: str) -> None:
    """HEAD and OPTIONS requests are traced but produce no analytics event."""

    async def go() -> None:
        async with client(fastapi_app(analytics.tracing)) as c:
            await c.request(method, "/public", headers=BROWSER)

    asyncio.run(go())
    assert analytics.events() == []


def test_bots_make_no_pageview_but_their_errors_count(analytics: Analytics) -> None:
    """A crawler's request makes no pageview, but an exception it triggers is still an error event."""
    app = fastapi_app(analytics.tracing)
    bot = {"user-agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"}
    get(app, "/public", headers=bot)
    get(app, "/boom", headers={**bot, **bearer("tok-bob")})
    assert [event.type for event in analytics.events()] == ["error"]


def test_privacy_signals_strip_user_fields_and_visitor_id(analytics: Analytics) -> None:
    """Sec-GPC: 1 or DNT: 1: the event has no user fields, no visitor id, no address."""
    app = fastapi_app(analytics.tracing)
    get(app, "/me", headers={**bearer("tok-bob"), **BROWSER, "sec-gpc": "1"})
    get(app, "/me", headers={**bearer("tok-bob"), **BROWSER, "dnt": "1"})
    events = analytics.events()
    assert len(events) == 2
    for event in events:
        assert (event.user_id, event.user_name, event.user_email, event.visitor_id, event.client_address) == (
            None,
            None,
            None,
            None,
            None,
        )
        assert "u-7" not in repr(event.to_dict())


def test_privacy_signals_are_honoured_only_when_configured(analytics: Analytics) -> None:
    """With honor_privacy_signals=False a DNT request keeps its user id and visitor id."""
    out.configure(honor_privacy_signals=False)
    get(fastapi_app(analytics.tracing), "/me", headers={**bearer("tok-bob"), **BROWSER, "dnt": "1"})
    [event] = analytics.events()
    assert event.user_id == "u-7" and event.visitor_id


def test_events_hold_exactly_what_the_policy_lets_the_span_have(analytics: Analytics) -> None:
    """The event's hashed email, masked name and anonymized address equal the span's tags, not raw values."""
    policy = out.TagPolicy(email="hash", name="mask", ip="anonymize", hash_key="test-key-" * 4)
    out.configure(tag_policy=policy)
    headers = {**bearer("tok-jane"), **BROWSER}
    get(fastapi_app(analytics.tracing), "/me", headers=headers, peer="198.51.100.77")
    [event] = analytics.events()
    span = analytics.tracing.server_span("/me").attributes
    assert event.user_email == span["user.email"] and "Example.com" not in str(event.user_email)
    assert event.user_name == span["user.name"] != "Jane Roe"
    assert event.client_address == span["client.address"] == "198.51.100.0"
    assert "198.51.100.77" not in repr(event.to_dict())


def test_configure_filter_drops_pageviews_by_status(analytics: Analytics) -> None:
    """A pageview_filter refusing status >= 400 drops the 404 pageview and keeps the 200 one."""
    out.configure(pageview_filter=lambda event: (event.status_code or 0) < 400)
    app = fastapi_app(analytics.tracing)
    get(app, "/missing", headers=BROWSER)
    get(app, "/public", headers=BROWSER)
    assert [event.path for event in analytics.events()] == ["/public"]


def test_excluded_urls_and_websockets_make_no_pageview(analytics: Analytics) -> None:
    """Excluded URLs are not traced and a websocket span makes no pageview: no events for either."""
    out.configure(excluded_urls=["/health"])

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hi")
        await websocket.close()

    app = Starlette(routes=[Route("/health", health), WebSocketRoute("/ws", echo)])
    get(app, "/health", headers=BROWSER)

    async def websocket() -> None:
        messages = [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}]
        scope = {
            "type": "websocket",
            "path": "/ws",
            "raw_path": b"/ws",
            "query_string": b"",
            "headers": [(b"host", b"testserver"), (b"user-agent", CHROME.encode())],
            "scheme": "ws",
            "server": ("testserver", 80),
            "client": ("203.0.113.9", 5000),
            "asgi": {"version": "3.0"},
        }

        async def receive() -> dict[str, Any]:
            return messages.pop(0) if messages else {"type": "websocket.disconnect", "code": 1000}

        async def send(message: dict[str, Any]) -> None:
            return None

        await app(scope, receive, send)

    asyncio.run(websocket())
    spans = analytics.tracing.server_spans()
    assert [span.attributes.get("user_tracking.request_type") for span in spans] == ["websocket"]
    assert analytics.events() == []


def test_converting_a_span_twice_gives_identical_events(analytics: Analytics) -> None:
    """Event ids derive from the span, so a re-sent conversion is deduplicated downstream."""
    get(fastapi_app(analytics.tracing), "/boom", headers={**bearer("tok-bob"), **BROWSER})
    span = analytics.tracing.server_span("/boom")
    config = out.get_config()
    first, second = convert_span(span, config), convert_span(span, config)
    assert first == second and len({event.event_id for event in first}) == 2


def test_the_events_user_fields_follow_the_policys_user_fields() -> None:
    """The event holds ``user_<field>`` for each TagPolicy user field, side by side and in order."""
    from otel_user_tracking.analytics.events import FIELDS
    from otel_user_tracking.policy import USER_FIELDS

    start = FIELDS.index("user_id")
    assert FIELDS[start : start + len(USER_FIELDS)] == tuple(f"user_{field}" for field in USER_FIELDS)
