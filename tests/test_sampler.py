"""Exact analytics under trace sampling: every request counted, only sampled traces exported."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Decision, ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind

import otel_user_tracking as out
from otel_user_tracking.analytics.sampler import install_analytics_sampler

from ._apps import Tracing, fastapi_app, get, instrumented
from ._sinks import ScriptedSink

CHROME = {"user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0 Safari/537.36"}


def test_zero_percent_sampling_still_counts_every_pageview_and_exports_no_span() -> None:
    """At 0 % trace sampling every request still makes its pageview and error, and no span is exported."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=out.AnalyticsAwareSampler(ParentBased(TraceIdRatioBased(0.0))))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sink = ScriptedSink()
    processor = out.AnalyticsSpanProcessor(sinks=[sink], flush_interval=60)
    provider.add_span_processor(processor)
    tracing = Tracing(provider, exporter)
    with instrumented(tracing):
        app = fastapi_app(tracing)
        for index in range(30):
            get(app, f"/users/{index}", headers={**CHROME, "authorization": "Bearer tok-bob"})
        get(app, "/boom", headers={**CHROME, "authorization": "Bearer tok-bob"})
    assert processor.force_flush(5000)
    pageviews = [event for event in sink.delivered if event.type == "pageview"]
    assert len(pageviews) == 31
    assert [event.type for event in sink.delivered].count("error") == 1
    assert {event.user_id for event in pageviews} == {"u-7"}
    assert exporter.get_finished_spans() == ()
    provider.shutdown()


def test_only_server_spans_are_kept_from_a_drop() -> None:
    """A dropped SERVER span is kept RECORD_ONLY for analytics; other spans and sampled ones are untouched."""
    sampler = out.AnalyticsAwareSampler(ALWAYS_OFF)
    server = sampler.should_sample(None, 1, "GET /", SpanKind.SERVER)
    internal = sampler.should_sample(None, 1, "work", SpanKind.INTERNAL)
    assert (server.decision, internal.decision) == (Decision.RECORD_ONLY, Decision.DROP)
    assert sampler.should_sample(None, 1, "GET /", SpanKind.SERVER).decision is not Decision.RECORD_AND_SAMPLE
    assert out.AnalyticsAwareSampler(ALWAYS_ON).should_sample(None, 1, "x", SpanKind.SERVER).decision is (
        Decision.RECORD_AND_SAMPLE
    )
    assert sampler.get_description() == "AnalyticsAwareSampler{AlwaysOffSampler}"


def test_installing_on_a_provider_wraps_its_sampler_once() -> None:
    """install_analytics_sampler wraps a provider's sampler the first time and leaves it alone the second."""
    provider = TracerProvider(sampler=ALWAYS_OFF)
    assert install_analytics_sampler(provider) is True
    assert install_analytics_sampler(provider) is False
    assert isinstance(provider.sampler, out.AnalyticsAwareSampler) and provider.sampler.base is ALWAYS_OFF
