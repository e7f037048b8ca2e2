"""Swetrix: our requests against the reference requests of the Swetrix FastAPI guide."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Optional

import pytest

from otel_user_tracking.analytics.events import AnalyticsEvent
from otel_user_tracking.sinks import sink_from_url
from otel_user_tracking.sinks.swetrix import SwetrixSink

from ._http_sink_server import Received, ScriptedHTTPServer

PID = "Abc123-xyz99"  # 12 characters: letters, digits, dashes
UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0 Safari/537.36"


def reference(path: str, payload: dict[str, Any], ip: Optional[str], user_agent: str) -> dict[str, Any]:
    """What the guide's SwetrixClient posts: its json payload and its three headers."""
    headers = {"user-agent": user_agent or "", "content-type": "application/json"}
    if ip is not None:
        headers["x-client-ip-address"] = ip
    return {"path": path, "json": payload, "headers": headers}


def ours(request: Received) -> dict[str, Any]:
    keep = ("user-agent", "x-client-ip-address", "content-type")
    return {
        "path": request.path,
        "json": request.json,
        "headers": {key: value for key, value in request.headers.items() if key in keep},
    }


def _event(type_: str, **fields: Any) -> AnalyticsEvent:
    values: dict[str, Any] = {
        "type": type_,
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "00f067aa0ba902b7",
        "path": "/products/7",
        "route": "/products/{id}",
        "user_agent": UA,
        "locale": "de-DE",
        "client_address": "198.51.100.0",
        **fields,
    }
    return AnalyticsEvent(**values)


@pytest.fixture
def server() -> Iterator[ScriptedHTTPServer]:
    with ScriptedHTTPServer() as running:
        running.answers = []
        yield running


@pytest.fixture
def sink(server: ScriptedHTTPServer, closing: Callable[[Any], Any]) -> SwetrixSink:
    return closing(SwetrixSink(PID, server.url + "/log"))  # type: ignore[no-any-return]


def test_pageview_is_the_guides_request(server: ScriptedHTTPServer, sink: SwetrixSink) -> None:
    """A pageview is posted to /log with the guide's payload (page, locale, referrer, UTM) and headers."""
    event = _event(
        "pageview",
        method="GET",
        status_code=200,
        referrer="https://google.com/",
        utm_source="newsletter",
        utm_medium="email",
        utm_campaign="launch",
    )
    sink.send([event])
    payload = {
        "pid": PID,
        "pg": "/products/{id}",
        "lc": "de-DE",
        "ref": "https://google.com/",
        "so": "newsletter",
        "me": "email",
        "ca": "launch",
        "meta": {"method": "GET", "status": "200"},
    }
    assert ours(server.received[0]) == reference("/log", payload, "198.51.100.0", UA)


def test_custom_event_is_the_guides_request_with_profile_id(
    server: ScriptedHTTPServer, sink: SwetrixSink
) -> None:
    """A custom event goes to /log/custom with its name, meta as strings, and the user id as profileId."""
    event = _event("custom", name="NEWSLETTER_SUBSCRIBE", meta={"plan": "pro", "seats": 3}, user_id="u-42")
    sink.send([event])
    payload = {
        "pid": PID,
        "ev": "NEWSLETTER_SUBSCRIBE",
        "pg": "/products/{id}",
        "meta": {"plan": "pro", "seats": "3"},
        "profileId": "u-42",
    }
    assert ours(server.received[0]) == reference("/log/custom", payload, "198.51.100.0", UA)


def test_error_is_the_guides_request_and_no_ip_header_without_an_allowed_address(
    server: ScriptedHTTPServer, sink: SwetrixSink
) -> None:
    """An error goes to /log/error as in the guide; with no client address no IP header is sent."""
    trace = 'Traceback (most recent call last):\n  File "app.py", line 3, in boom\nRuntimeError: kaboom\n'
    event = _event(
        "error",
        error_type="RuntimeError",
        error_message="kaboom",
        error_stacktrace=trace,
        client_address=None,
    )
    sink.send([event])
    payload = {
        "pid": PID,
        "name": "RuntimeError",
        "message": "kaboom",
        "stackTrace": trace,
        "pg": "/products/{id}",
        "lc": "de-DE",
        "meta": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"},
    }
    assert ours(server.received[0]) == reference("/log/error", payload, None, UA)


def test_only_failed_events_are_retried_and_refusals_are_counted(
    server: ScriptedHTTPServer, caplog: pytest.LogCaptureFixture, closing: Callable[[Any], Any]
) -> None:
    """503 and 429 events are retried (Retry-After kept), a 402 is failed, and no reason shows the pid."""
    sink = closing(SwetrixSink(PID, server.url + "/log", concurrency=1))  # one at a time: answers in order
    events = [_event("pageview", path=f"/p/{n}", route=None) for n in range(4)]
    server.answers = [(201, {}), (503, {}), (402, {}), (429, {"Retry-After": "3"})]
    result = sink.send(events)
    assert result is not None
    assert [event.path for event in result.retry] == ["/p/1", "/p/3"]
    assert result.retry_after == 3.0
    assert result.failed == 1 and "over its plan's event limit" in result.reason
    assert PID not in result.reason and PID not in repr(sink)


def test_project_id_form_is_checked_at_start_up(closing: Callable[[Any], Any]) -> None:
    """A malformed project id is refused at URL parsing without being echoed; a valid one builds the sink."""
    with pytest.raises(ValueError, match="12 letters, digits or dashes") as info:
        sink_from_url("swetrix+https://not-a-valid-project-id@api.swetrix.com/log")
    assert "not-a-valid-project-id" not in str(info.value) and "***@api.swetrix.com" in str(info.value)
    sink = closing(sink_from_url(f"swetrix+http://{PID}@127.0.0.1:9/self/log"))
    assert isinstance(sink, SwetrixSink) and sink.url == "http://127.0.0.1:9/self/log"
