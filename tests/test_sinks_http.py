"""PostHog, Segment and webhook sinks: auth placement, retry classes, limits, gzip, masking."""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from otel_user_tracking.analytics.events import AnalyticsEvent
from otel_user_tracking.sinks import PermanentSinkError, RetryableSinkError, sink_from_url, sinks_from_env
from otel_user_tracking.sinks.posthog import PostHogSink
from otel_user_tracking.sinks.segment import SegmentSink
from otel_user_tracking.sinks.webhook import WebhookSink

from ._http_sink_server import ScriptedHTTPServer

SECRET = "phc_SuperSecret123"


def _event(n: int = 0, **fields: Any) -> AnalyticsEvent:
    return AnalyticsEvent(
        type="pageview", trace_id="ab" * 16, span_id="cd" * 8, path=f"/p/{n}", visitor_id="v", **fields
    )


@pytest.fixture
def server() -> Iterator[ScriptedHTTPServer]:
    with ScriptedHTTPServer() as running:
        yield running


@pytest.fixture
def sinks(server: ScriptedHTTPServer, closing: Callable[[Any], Any]) -> list[Any]:
    """One sink of each HTTP kind, all posting to ``server``."""
    return [
        closing(PostHogSink(SECRET, server.url)),
        closing(SegmentSink(SECRET, server.url)),
        closing(WebhookSink(server.url + "/hook")),
    ]


def test_credentials_go_where_each_api_wants_them(
    server: ScriptedHTTPServer, monkeypatch: Any, closing: Callable[[Any], Any]
) -> None:
    """PostHog gets its key in the body, Segment as basic auth, the webhook its Authorization from the env."""
    monkeypatch.setenv("OTEL_PYTHON_USER_TRACKING_WEBHOOK_AUTHORIZATION", "Bearer hook-token")
    host = server.url.split("://", 1)[1]
    for sink in sinks_from_env(
        f"posthog+http://{SECRET}@{host},segment+http://{SECRET}@{host},webhook+http://{host}/hook"
    ):
        closing(sink).send([_event()])
    posthog, segment, webhook = server.received
    assert posthog.path == "/batch/" and posthog.json["api_key"] == SECRET
    assert "authorization" not in posthog.headers and posthog.headers["content-encoding"] == "gzip"
    assert segment.path == "/v1/batch"
    assert segment.headers["authorization"] == "Basic " + base64.b64encode(f"{SECRET}:".encode()).decode()
    assert webhook.path == "/hook" and webhook.headers["authorization"] == "Bearer hook-token"
    assert [event["path"] for event in webhook.json["batch"]] == ["/p/0"]


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
def test_these_answers_are_retried(server: ScriptedHTTPServer, sinks: list[Any], status: int) -> None:
    """408, 429 and 5xx answers raise RetryableSinkError carrying Retry-After, for each HTTP sink."""
    for sink in sinks:
        server.answers = [(status, {"Retry-After": "7"})]
        with pytest.raises(RetryableSinkError) as info:
            sink.send([_event()])
        assert info.value.retry_after == 7.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413])
def test_these_answers_are_permanent(server: ScriptedHTTPServer, sinks: list[Any], status: int) -> None:
    """Other 4xx answers raise PermanentSinkError naming the status, for each HTTP sink."""
    for sink in sinks:
        server.answers = [(status, {})]
        with pytest.raises(PermanentSinkError, match=f"HTTP {status}"):
            sink.send([_event()])


def test_segment_splits_at_500_kb_and_drops_messages_over_32_kb(
    server: ScriptedHTTPServer, closing: Callable[[Any], Any]
) -> None:
    """Segment batches stay under 500 KB, in order, each event once; a message over 32 KiB is dropped."""
    sink = closing(SegmentSink(SECRET, server.url))
    big = "x" * 20_000  # ~20 KB messages: 25 of them make 500 KB
    events = [_event(n, user_agent=big) for n in range(60)] + [_event(99, user_agent="y" * 40_000)]
    result = sink.send(events)
    sizes = [len(request.raw) for request in server.received]
    assert len(sizes) >= 3 and max(sizes) <= 500_000
    delivered = [message["properties"]["path"] for r in server.received for message in r.json["batch"]]
    assert delivered == [f"/p/{n}" for n in range(60)]  # in order, none twice, the oversized one not
    assert result is not None and result.dropped == 1 and "over 32 KiB" in result.reason


def test_a_failure_after_the_first_request_returns_only_the_rest(
    server: ScriptedHTTPServer, closing: Callable[[Any], Any]
) -> None:
    """When a later request of a split batch fails, only the events not yet accepted are returned to retry."""
    sink = closing(SegmentSink(SECRET, server.url))
    server.answers = [(200, {}), (503, {})]
    events = [_event(n, user_agent="x" * 20_000) for n in range(40)]
    result = sink.send(events)
    first = len(server.received[0].json["batch"])
    assert result is not None and [event.path for event in result.retry] == [
        f"/p/{n}" for n in range(first, 40)
    ]


def test_posthog_splits_at_its_batch_limit(server: ScriptedHTTPServer, closing: Callable[[Any], Any]) -> None:
    """A PostHog batch over its 5 MiB limit is split into several requests that together carry every event."""
    sink = closing(PostHogSink(SECRET, server.url))
    sink.send([_event(n, user_agent="z" * 800_000) for n in range(8)])  # 6.4 MB > 5 MiB
    assert len(server.received) == 2
    assert sum(len(request.json["batch"]) for request in server.received) == 8


def test_credentials_never_show_in_logs_errors_or_repr(
    server: ScriptedHTTPServer, sinks: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    """API keys never appear in a sink's repr or name, its errors, URL parsing errors or the logs."""
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for sink in sinks:
            texts.append(repr(sink) + sink.name)
            server.answers = [(401, {})]
            with pytest.raises(PermanentSinkError) as info:
                sink.send([_event()])
            texts.append(str(info.value))
        for url in (
            f"posthog+https://{SECRET}@",
            f"segment+https://{SECRET}@",
            f"webhook+https://{SECRET}@h/x",
        ):
            with pytest.raises(ValueError) as bad:
                sink_from_url(url)
            texts.append(str(bad.value))
    texts.append(caplog.text)
    assert not [text for text in texts if SECRET in text]


def test_malformed_urls_say_the_expected_form() -> None:
    """A malformed PostHog or Segment URL raises ValueError showing the expected form."""
    with pytest.raises(
        ValueError, match=re.escape("expected the form 'posthog+https://PROJECT_API_KEY@us.i.posthog.com'")
    ):
        sink_from_url("posthog+https://us.i.posthog.com")
    with pytest.raises(ValueError, match="write key goes in the user part"):
        sink_from_url("segment+https://api.segment.io")
    with pytest.raises(ValueError, match=re.escape("transport must be +http or +https")):
        sink_from_url("segment+ftp://k@api.segment.io")
