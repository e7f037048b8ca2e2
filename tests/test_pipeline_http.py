"""Delivery over real HTTP to a local endpoint: 503s, 429 with Retry-After, hangs, refusals."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

import otel_user_tracking as out
from otel_user_tracking.sinks.webhook import WebhookSink

from ._http_sink_server import ScriptedHTTPServer, refused_url
from ._sinks import end_request_spans


@pytest.fixture
def server() -> Iterator[ScriptedHTTPServer]:
    with ScriptedHTTPServer() as running:
        yield running


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    provider = TracerProvider()
    yield provider
    provider.shutdown()


def _processor(provider: TracerProvider, sink: WebhookSink, **options: float) -> out.AnalyticsSpanProcessor:
    settings = {"flush_interval": 60.0, "initial_backoff": 0.02, "max_backoff": 2.0, **options}
    processor = out.AnalyticsSpanProcessor(sinks=[sink], **settings)  # type: ignore[arg-type]
    provider.add_span_processor(processor)
    return processor


def test_503_then_success_loses_nothing_and_duplicates_nothing(
    server: ScriptedHTTPServer, provider: TracerProvider
) -> None:
    """Two 503 answers are retried over real HTTP until all 50 events arrive, none lost and none twice."""
    server.answers = [(503, {}), (503, {})]
    processor = _processor(provider, WebhookSink(server.url + "/events"), flush_at=20)
    end_request_spans(provider, 50)
    assert processor.force_flush(10_000)
    delivered = [request.json["batch"] for request in server.received[2:]]
    ids = [event["event_id"] for batch in delivered for event in batch]
    assert len(ids) == 50 and len(set(ids)) == 50
    stats = processor.stats()[f"webhook(127.0.0.1:{server.url.rsplit(':', 1)[1]})"]
    assert (stats.sent, stats.failed, stats.dropped, stats.retried) == (50, 0, 0, 40)


def test_429_waits_for_retry_after(server: ScriptedHTTPServer, provider: TracerProvider) -> None:
    """A 429 with Retry-After: 1 delays the resend by at least that second, beyond the 20 ms backoff."""
    server.answers = [(429, {"Retry-After": "1"})]
    processor = _processor(provider, WebhookSink(server.url + "/events"))
    end_request_spans(provider, 3)
    started = time.monotonic()
    assert processor.force_flush(10_000)
    assert len(server.received) == 2 and len(server.events()) == 6  # the same 3 events twice
    assert time.monotonic() - started >= 1.0  # honoured, although the backoff alone is 20 ms


def test_4xx_is_not_retried(server: ScriptedHTTPServer, provider: TracerProvider) -> None:
    """A 400 answer is final: the batch is sent once and its events count as failed."""
    server.answers = [(400, {})]
    processor = _processor(provider, WebhookSink(server.url + "/events"))
    end_request_spans(provider, 3)
    assert processor.force_flush(10_000)
    assert len(server.received) == 1
    assert next(iter(processor.stats().values())).failed == 3


def test_a_hanging_endpoint_times_out_and_is_retried(
    server: ScriptedHTTPServer, provider: TracerProvider
) -> None:
    """A request to an endpoint that never answers times out at the sink's timeout and is sent again."""
    server.hang.set()
    processor = _processor(provider, WebhookSink(server.url + "/events", timeout=0.2), flush_at=1)
    end_request_spans(provider, 1)
    server.wait_for(lambda s: len(s.received) >= 2)  # the timed-out request was sent again
    server.hang.clear()
    assert processor.force_flush(10_000)
    stats = next(iter(processor.stats().values()))
    assert stats.sent == 1 and stats.retried >= 1


def test_refused_connections_keep_memory_bounded_and_count_drops(provider: TracerProvider) -> None:
    """While connections are refused the queue stays bounded and every event is counted dropped or failed."""
    sink = WebhookSink(refused_url(), timeout=0.5)
    processor = _processor(provider, sink, flush_at=10, max_queue_size=100, max_retries=2)
    end_request_spans(provider, 1000)  # on_end never waits for the network: drops instead
    stats = next(iter(processor.stats().values()))
    assert stats.queued <= 100 + 10  # the queue bound, plus one batch in flight
    processor.shutdown(2000)
    stats = next(iter(processor.stats().values()))
    assert stats.sent == 0 and stats.dropped >= 800
    assert stats.dropped + stats.failed == 1000
