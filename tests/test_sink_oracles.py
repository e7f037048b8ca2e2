"""Our PostHog and Segment payloads against the official SDKs' for the same logical events.

Both run against one local capture server; every field both send must agree in name,
nesting and type, identity fields in value, and timestamps in format. A field the SDK sends
and we do not (or the reverse) is listed explicitly with the reason.
"""

from __future__ import annotations

import re
import sys
import traceback
from datetime import datetime, timezone
from typing import Any

import pytest
from posthog import Posthog
from segment.analytics.client import Client as SegmentClient

from otel_user_tracking.analytics.events import AnalyticsEvent
from otel_user_tracking.sinks.posthog import PostHogSink
from otel_user_tracking.sinks.segment import SegmentSink

from ._http_sink_server import Received, ScriptedHTTPServer

WHEN = datetime(2026, 11, 20, 9, 30, 15, 123456, tzinfo=timezone.utc)
EVENT_ID = "5f0a3e4e-1111-4222-8333-444455556666"
UA = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"
# Identity and naming fields: equal values, not only equal types.
IDENTITY = {"distinct_id", "uuid", "event", "userId", "anonymousId", "messageId", "type", "name", "api_key"}
# The SDK knows the frame's module from the live traceback; we parse the formatted text.
TYPE_MAY_DIFFER = {"module"}


def _shape(text: str) -> str:
    return re.sub(r"\d", "0", text)


def assert_same_shape(sdk: Any, ours: Any, path: str = "") -> None:
    """Every key both have agrees recursively; identity values are equal; timestamps alike."""
    if isinstance(sdk, dict) and isinstance(ours, dict):
        for key in sdk.keys() & ours.keys():
            assert_same_shape(sdk[key], ours[key], f"{path}.{key}")
        return
    if isinstance(sdk, list) and isinstance(ours, list):
        for sdk_item, our_item in zip(sdk, ours):
            assert_same_shape(sdk_item, our_item, f"{path}[]")
        return
    name = path.rsplit(".", 1)[-1]
    if sdk is None or ours is None:
        assert name in TYPE_MAY_DIFFER or sdk is ours, f"{path}: SDK {sdk!r}, ours {ours!r}"
        return
    assert type(sdk) is type(ours), f"{path}: SDK {type(sdk).__name__}, ours {type(ours).__name__}"
    if name in IDENTITY and path.count(".") <= 2:  # message level; nested "name"s (library) differ
        assert sdk == ours, f"{path}: SDK {sdk!r}, ours {ours!r}"
    if isinstance(sdk, str) and re.fullmatch(r"\d{4}-\d\d-\d\dT.*", sdk):
        assert _shape(sdk) == _shape(ours), f"{path}: timestamp format SDK {sdk!r}, ours {ours!r}"


def _event(type_: str, **fields: Any) -> AnalyticsEvent:
    values: dict[str, Any] = {
        "type": type_,
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "00f067aa0ba902b7",
        "timestamp": WHEN,
        "event_id": EVENT_ID,
        "method": "GET",
        "scheme": "https",
        "host": "shop.example",
        "path": "/products/7",
        "route": "/products/{id}",
        "referrer": "https://google.com/",
        "user_agent": UA,
        "locale": "de-DE",
        "client_address": "198.51.100.0",
        "user_id": "user-42",
        **fields,
    }
    return AnalyticsEvent(**values)


def _error_text() -> tuple[RuntimeError, str]:
    try:
        raise RuntimeError("kaboom")
    except RuntimeError as exc:
        return exc, "".join(traceback.format_exception(*sys.exc_info()))


def _one(received: list[Received], path: str) -> dict[str, Any]:
    [request] = [r for r in received if r.path == path]
    return request.json  # type: ignore[no-any-return]


@pytest.fixture
def server() -> Any:
    with ScriptedHTTPServer() as running:
        yield running


def _posthog_pair(server: ScriptedHTTPServer, sdk_call: Any, event: AnalyticsEvent) -> tuple[Any, Any]:
    client = Posthog("phc_key", host=server.url, sync_mode=True)
    sdk_call(client)
    if client.consumers is not None:  # None in sync mode on posthog 6 (the newest on Python 3.9)
        client.shutdown()
    sdk_body = _one(server.received, "/batch/")
    if "sentAt" in sdk_body:  # posthog 6 (the newest on Python 3.9) spells it the old way
        sdk_body["sent_at"] = sdk_body.pop("sentAt")
    server.received.clear()
    sink = PostHogSink("phc_key", server.url)
    sink.send([event])
    sink.close()
    ours = server.received[0]
    assert ours.headers.get("content-encoding") == "gzip"
    server.received.clear()
    return sdk_body, ours.json


def test_posthog_pageview_matches_the_sdk(server: ScriptedHTTPServer) -> None:
    """Our PostHog pageview batch has the SDK's envelope, event keys, identity values and $-properties."""
    properties = {
        "$current_url": "https://shop.example/products/7",
        "$pathname": "/products/7",
        "$host": "shop.example",
        "$referrer": "https://google.com/",
        "$ip": "198.51.100.0",
    }
    sdk, ours = _posthog_pair(
        server,
        lambda c: c.capture(
            "$pageview", distinct_id="user-42", properties=properties, timestamp=WHEN, uuid=EVENT_ID
        ),
        _event("pageview", status_code=200),
    )
    assert_same_shape(sdk, ours)
    assert set(sdk) == set(ours)  # envelope: batch, api_key, sent_at, historical_migration
    [sdk_event], [our_event] = sdk["batch"], ours["batch"]
    assert set(sdk_event) == set(our_event)
    for key, value in properties.items():
        assert our_event["properties"][key] == value


def test_posthog_custom_event_matches_the_sdk(server: ScriptedHTTPServer) -> None:
    """An anonymous custom event matches the SDK's shape, including $process_person_profile, with its meta."""
    sdk, ours = _posthog_pair(
        server,
        lambda c: c.capture("CHECKOUT_COMPLETED", properties={"plan": "pro"}, timestamp=WHEN, uuid=EVENT_ID),
        _event("custom", name="CHECKOUT_COMPLETED", meta={"plan": "pro"}, user_id=None, visitor_id="v-1"),
    )
    [sdk_event], [our_event] = sdk["batch"], ours["batch"]
    sdk_event["distinct_id"] = "v-1"  # the SDK makes a random id for anonymous events; ours is the visitor
    assert_same_shape(sdk_event, our_event)
    assert (
        our_event["properties"]["$process_person_profile"]
        is sdk_event["properties"]["$process_person_profile"]
    )
    assert our_event["properties"]["plan"] == "pro"


def test_posthog_exception_matches_the_sdk(server: ScriptedHTTPServer) -> None:
    """Our $exception event carries the SDK's exception list fields and the same innermost frame."""
    exc, text = _error_text()
    sdk, ours = _posthog_pair(
        server,
        lambda c: c.capture_exception(exc, distinct_id="user-42", uuid=EVENT_ID),
        _event("error", error_type="RuntimeError", error_message="kaboom", error_stacktrace=text),
    )
    [sdk_event], [our_event] = sdk["batch"], ours["batch"]
    sdk_event["timestamp"] = our_event["timestamp"]  # capture_exception stamps "now"
    assert_same_shape(sdk_event, our_event)
    [sdk_exception], [our_exception] = (e["properties"]["$exception_list"] for e in (sdk_event, our_event))
    assert set(sdk_exception) <= set(our_exception)
    assert (our_exception["type"], our_exception["value"]) == ("RuntimeError", "kaboom")
    sdk_frame, our_frame = (
        sdk_exception["stacktrace"]["frames"][-1],
        our_exception["stacktrace"]["frames"][-1],
    )
    assert (our_frame["function"], our_frame["lineno"]) == (sdk_frame["function"], sdk_frame["lineno"])
    assert our_frame["context_line"] == sdk_frame["context_line"].strip()
    assert our_event["properties"]["$exception_type"] == "RuntimeError"


def _segment_pair(
    server: ScriptedHTTPServer, sdk_call: Any, event: AnalyticsEvent
) -> tuple[Any, Any, Received]:
    client = SegmentClient("seg_key", host=server.url, sync_mode=True)
    sdk_call(client)  # sync_mode: sent before the call returns (and no consumer thread to join)
    sdk_request = server.received[0]
    server.received.clear()
    sink = SegmentSink("seg_key", server.url)
    sink.send([event])
    sink.close()
    ours = server.received[0]
    # The key as the SDK sends it: in the body (every release) and as the basic-auth user (2.4+).
    assert ours.json["writeKey"] == sdk_request.json["writeKey"] == "seg_key"
    if "authorization" in sdk_request.headers:
        assert ours.headers["authorization"] == sdk_request.headers["authorization"]
    server.received.clear()
    return sdk_request.json, ours.json, ours


def test_segment_page_matches_the_sdk(server: ScriptedHTTPServer) -> None:
    """Our Segment page call matches the SDK's message, with the same context (page, campaign, ip, locale)."""
    context = {
        "ip": "198.51.100.0",
        "userAgent": UA,
        "locale": "de-DE",
        "page": {
            "path": "/products/7",
            "url": "https://shop.example/products/7",
            "referrer": "https://google.com/",
        },
        "campaign": {"source": "news", "medium": "email", "name": "launch"},
    }
    sdk, ours, _ = _segment_pair(
        server,
        lambda c: c.page(
            user_id="user-42",
            name="/products/{id}",
            properties={"path": "/products/7", "url": "https://shop.example/products/7"},
            context=dict(context),  # the SDK adds its library to the dict it gets
            timestamp=WHEN,
            message_id=EVENT_ID,
        ),
        _event("pageview", utm_source="news", utm_medium="email", utm_campaign="launch"),
    )
    assert_same_shape(sdk, ours)
    [sdk_message], [our_message] = sdk["batch"], ours["batch"]
    for key, value in context.items():
        assert our_message["context"][key] == value
    assert {key for key, value in sdk_message.items() if value is not None} <= set(our_message)


def test_segment_track_and_error_match_the_sdk(server: ScriptedHTTPServer) -> None:
    """Custom events and errors go out as Segment track calls shaped like the SDK's, meta as properties."""
    sdk, ours, _ = _segment_pair(
        server,
        lambda c: c.track(
            anonymous_id="v-1",
            event="Item Purchased",
            properties={"sku": "A-1"},
            timestamp=WHEN,
            message_id=EVENT_ID,
        ),
        _event("custom", name="Item Purchased", meta={"sku": "A-1"}, user_id=None, visitor_id="v-1"),
    )
    assert_same_shape(sdk, ours)
    assert ours["batch"][0]["properties"]["sku"] == "A-1"
    sdk, ours, _ = _segment_pair(
        server,
        lambda c: c.track(user_id="user-42", event="Exception Occurred", timestamp=WHEN, message_id=EVENT_ID),
        _event("error", error_type="RuntimeError", error_message="kaboom"),
    )
    assert_same_shape(sdk, ours)
    assert ours["batch"][0]["properties"]["type"] == "RuntimeError"
