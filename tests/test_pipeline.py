"""The delivery pipeline's contract, with in-process sinks that script their answers."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

import otel_user_tracking as out
from otel_user_tracking.analytics.pipeline import batch_sizes
from otel_user_tracking.analytics.settings import DeliverySettings
from otel_user_tracking.sinks import SendResult

from ._sinks import ScriptedSink, end_request_spans, permanent, retry

FAST = {"initial_backoff": 0.01, "max_backoff": 0.05}


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    provider = TracerProvider()
    yield provider
    provider.shutdown()


def _processor(
    provider: TracerProvider, *sinks: ScriptedSink, **options: object
) -> out.AnalyticsSpanProcessor:
    settings: dict[str, object] = {"flush_interval": 60.0, **FAST, **options}
    processor = out.AnalyticsSpanProcessor(sinks=list(sinks), **settings)  # type: ignore[arg-type]
    provider.add_span_processor(processor)
    return processor


def _ids(events: list[out.AnalyticsEvent]) -> list[str]:
    return [event.event_id for event in events]


def test_full_batches_go_out_without_a_flush_and_the_rest_on_flush(provider: TracerProvider) -> None:
    """Each flush_at events leave as a batch unprompted; force_flush sends the rest, each event once."""
    sink = ScriptedSink()
    processor = _processor(provider, sink, flush_at=10)
    end_request_spans(provider, 25)
    sink.wait_delivered(20)
    assert processor.force_flush(5000)
    assert [len(call) for call in sink.calls] == [10, 10, 5]
    assert len(set(_ids(sink.delivered))) == 25


def test_the_interval_sends_a_partial_batch(provider: TracerProvider) -> None:
    """A batch smaller than flush_at still leaves once flush_interval has passed, without a flush."""
    sink = ScriptedSink()
    _processor(provider, sink, flush_at=100, flush_interval=0.05)
    end_request_spans(provider, 3)
    assert len(sink.wait_delivered(3)) == 3


def test_batches_respect_the_sinks_own_size_limit(provider: TracerProvider) -> None:
    """A sink's max_batch_size caps each batch below the processor's flush_at."""
    sink = ScriptedSink(max_batch_size=4)
    processor = _processor(provider, sink, flush_at=100)
    end_request_spans(provider, 10)
    assert processor.force_flush(5000)
    assert [len(call) for call in sink.calls] == [4, 4, 2]


def test_a_local_sink_that_prefers_big_batches_gathers_them(provider: TracerProvider) -> None:
    """A sink with ``preferred_batch_size`` (the store) is sent nothing unprompted until that
    many events wait, then up to its ``max_batch_size`` at a time; a flush sends the rest."""
    sink = ScriptedSink(max_batch_size=80)
    sink.preferred_batch_size = 50  # type: ignore[attr-defined]
    processor = _processor(provider, sink, flush_at=10)
    end_request_spans(provider, 49)
    assert processor._intake.flush(time.monotonic() + 5)  # the events are queued for the sink
    assert sink.calls == []
    end_request_spans(provider, 151)
    sink.wait_delivered(150)
    assert all(50 <= len(call) <= 80 for call in sink.calls)
    assert processor.force_flush(5000)
    assert sum(len(call) for call in sink.calls) == 200
    assert len(set(_ids(sink.delivered))) == 200


@pytest.mark.parametrize(
    ("options", "preferred", "expected"),
    [
        ({"flush_at": 100}, 0, (100, 100)),  # remote sinks: flush_at is the batch
        ({"flush_at": 2000}, 0, (1000, 1000)),  # capped by the sink's max_batch_size
        ({"flush_at": 100}, 1000, (1000, 1000)),  # the store's default
        ({"flush_at": 100, "max_queue_size": 600}, 1000, (300, 1000)),  # half the queue
        ({"flush_at": 100, "max_queue_size": 50}, 1000, (100, 1000)),  # never below flush_at
        ({"flush_at": 500}, 200, (500, 500)),  # flush_at above the preference wins
    ],
)
def test_batch_sizes(options: dict[str, int], preferred: int, expected: tuple[int, int]) -> None:
    """When the sender wakes and how much one send takes, per sink and settings."""
    sink = ScriptedSink(max_batch_size=1000)
    if preferred:
        sink.preferred_batch_size = preferred  # type: ignore[attr-defined]
    assert batch_sizes(sink, DeliverySettings(**options)) == expected


def test_retryable_failures_are_retried_until_delivered_once(provider: TracerProvider) -> None:
    """Retryable answers (Retry-After honoured) are retried until each event is delivered exactly once."""
    sink = ScriptedSink(script=[retry(), retry("HTTP 429", retry_after=0.01)])
    processor = _processor(provider, sink, flush_at=100)
    end_request_spans(provider, 5)
    assert processor.force_flush(5000)
    assert len(sink.calls) == 3
    assert sorted(_ids(sink.delivered)) == sorted(set(_ids(sink.calls[0])))
    stats = processor.stats()["scripted"]
    assert (stats.enqueued, stats.sent, stats.retried, stats.failed, stats.dropped) == (5, 5, 10, 0, 0)


def test_only_the_undelivered_part_of_a_batch_is_retried(provider: TracerProvider) -> None:
    """When a sink returns only some events to retry, only those are sent again."""
    first: list[out.AnalyticsEvent] = []

    def partial(batch: object) -> SendResult | None:
        if not first:
            first.extend(batch)  # type: ignore[call-overload]
            return SendResult(retry=first[3:])
        return None

    sink = ScriptedSink(answer=partial)
    processor = _processor(provider, sink)
    end_request_spans(provider, 5)
    assert processor.force_flush(5000)
    assert _ids(sink.calls[1]) == _ids(first[3:])
    assert sorted(_ids(sink.delivered)) == sorted(_ids(first))
    assert processor.stats()["scripted"].sent == 5


def test_permanent_failures_are_not_retried_and_logged_with_the_answer(
    provider: TracerProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """A permanent refusal is sent once, counted as failed, and logged with the backend's answer."""
    sink = ScriptedSink(script=[permanent("swetrix: HTTP 400: The provided Project ID (pid) is incorrect")])
    processor = _processor(provider, sink)
    end_request_spans(provider, 3)
    with caplog.at_level(logging.WARNING, logger="otel_user_tracking"):
        assert processor.force_flush(5000)
    assert len(sink.calls) == 1
    assert processor.stats()["scripted"].failed == 3
    assert "Project ID (pid) is incorrect" in caplog.text


def test_retries_stop_after_max_retries(provider: TracerProvider) -> None:
    """After max_retries retryable answers the events count as failed and are not sent again."""
    sink = ScriptedSink(answer=lambda batch: retry())
    processor = _processor(provider, sink, max_retries=3)
    end_request_spans(provider, 2)
    assert processor.force_flush(5000)
    assert len(sink.calls) == 4
    stats = processor.stats()["scripted"]
    assert (stats.sent, stats.failed, stats.retried) == (0, 2, 6)


def test_a_sink_bug_is_counted_not_raised(provider: TracerProvider) -> None:
    """An exception raised inside a sink's send counts the batch as failed and never reaches the caller."""
    sink = ScriptedSink(script=[ZeroDivisionError()])
    processor = _processor(provider, sink)
    end_request_spans(provider, 2)
    assert processor.force_flush(5000)
    assert processor.stats()["scripted"].failed == 2 and len(sink.calls) == 1


def test_a_full_queue_drops_new_spans_counts_them_and_never_blocks(provider: TracerProvider) -> None:
    """With the sink stuck, ending spans never blocks: beyond max_queue_size they are dropped and counted."""
    sink = ScriptedSink()
    sink.gate = threading.Event()  # the sink hangs until released
    processor = _processor(provider, sink, flush_at=1, max_queue_size=5)
    end_request_spans(provider, 1)
    assert sink.entered.wait(5)  # the worker now holds the first batch inside send()
    end_request_spans(provider, 20)  # returns at once although the sink is stuck
    stats = processor.stats()["scripted"]
    # At most 5 spans wait unconverted, 5 events in the sink's queue and 1 in the stuck send.
    assert stats.queued <= 5 + 1 and stats.dropped >= 20 - 5 - 5
    sink.gate.set()
    assert processor.force_flush(5000)
    stats = processor.stats()["scripted"]
    assert stats.sent + stats.dropped == 21 and stats.sent == len(sink.delivered)


def test_spans_meeting_only_full_queues_are_counted_without_conversion(
    provider: TracerProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While every sink's queue is full, spans are counted as dropped without being converted."""
    from otel_user_tracking.analytics import processor as processor_module

    converted: list[object] = []
    real = processor_module.event_rows
    monkeypatch.setattr(processor_module, "event_rows", lambda *args: converted.append(1) or real(*args))
    sink = ScriptedSink()
    sink.gate = threading.Event()  # the sink hangs until released
    processor = _processor(provider, sink, flush_at=1, max_queue_size=200)
    end_request_spans(provider, 1)
    assert sink.entered.wait(5)
    for _ in range(5):
        end_request_spans(provider, 100)
        processor.force_flush(200)  # converts (or counts) what is queued; the stuck sink makes it False
    assert len(converted) <= 1 + 200 + 64  # the spans that filled the queue, and one chunk more at most
    sink.gate.set()
    assert processor.force_flush(5000)
    stats = processor.stats()["scripted"]
    assert stats.enqueued == 501 == stats.sent + stats.dropped and stats.sent == len(sink.delivered) <= 201


def test_a_slow_sink_does_not_hold_back_the_others(provider: TracerProvider) -> None:
    """Each sink has its own worker: a hanging sink does not delay delivery to another one."""
    slow, fast = ScriptedSink("slow"), ScriptedSink("fast")
    slow.gate = threading.Event()
    processor = _processor(provider, slow, fast, flush_at=1)
    end_request_spans(provider, 5)
    assert len(fast.wait_delivered(5)) == 5
    assert slow.delivered == []
    slow.gate.set()
    assert processor.force_flush(5000)
    assert len(slow.delivered) == 5


def test_waiting_events_are_rows_the_collector_stops_tracking(provider: TracerProvider) -> None:
    """Queued events are plain tuples of atomic values, which the garbage collector untracks
    once they survive a collection, so the thousand events waiting for the store's next
    transaction do not lengthen every collection of the older generations (the event loop's
    longest pauses). Sinks still get ``AnalyticsEvent``s, except a sink that takes rows."""
    rows_sink = ScriptedSink("rows")
    rows_sink.takes_rows = True  # type: ignore[attr-defined]
    rows_sink.gate = threading.Event()  # holds its batch: the next events wait in the queue
    events_sink = ScriptedSink("events")
    processor = _processor(provider, rows_sink, events_sink, flush_at=1)
    end_request_spans(provider, 1)
    assert rows_sink.entered.wait(5)
    end_request_spans(provider, 20, **{"user.id": "u-1"})
    assert len(events_sink.wait_delivered(21)) == 21
    queued = list(processor._pipelines[0]._queue)  # the rows sink's queue, behind its gate
    assert len(queued) == 20
    gc.collect()
    assert all(type(row) is tuple and not gc.is_tracked(row) for row in queued)
    assert all(type(event) is out.AnalyticsEvent for event in events_sink.delivered)
    assert events_sink.delivered[-1].user_id == "u-1"
    rows_sink.gate.set()
    assert processor.force_flush(5000)
    assert [type(row) for row in rows_sink.delivered] == [tuple] * 21
    assert sorted(rows_sink.delivered) == sorted(tuple(event) for event in events_sink.delivered)


def test_force_flush_returns_false_when_its_timeout_passes(provider: TracerProvider) -> None:
    """force_flush honours its timeout: it returns False while a sink hangs, True once it answers."""
    sink = ScriptedSink()
    sink.gate = threading.Event()
    processor = _processor(provider, sink)
    end_request_spans(provider, 1)
    assert processor.force_flush(100) is False
    sink.gate.set()
    assert processor.force_flush(5000) is True


def test_shutdown_delivers_what_is_queued_and_closes_the_sinks(provider: TracerProvider) -> None:
    """Shutdown delivers every queued event, closes the sinks, and ignores spans ended afterwards."""
    sink = ScriptedSink()
    processor = _processor(provider, sink, flush_at=1000)
    end_request_spans(provider, 50)
    provider.shutdown()
    assert len(sink.delivered) == 50 and sink.closed
    end_request_spans(provider, 1)  # after shutdown: ignored, not queued
    assert processor.stats()["scripted"].enqueued == 50


def test_shutdown_keeps_its_timeout_when_a_sink_hangs(provider: TracerProvider) -> None:
    """shutdown(200 ms) returns in time while a sink asks for long retries, counting what is undelivered."""
    sink = ScriptedSink(answer=lambda batch: retry(retry_after=10.0))
    processor = _processor(provider, sink, flush_at=1, max_backoff=30.0)
    end_request_spans(provider, 3)
    sink.wait_calls(1)
    finished = threading.Event()
    thread = threading.Thread(target=lambda: (processor.shutdown(200), finished.set()))
    thread.start()
    assert finished.wait(5), "shutdown(200 ms) did not return"
    stats = processor.stats()["scripted"]
    assert stats.sent == 0 and stats.failed + stats.dropped == 3 and sink.closed


def test_a_sink_still_sending_at_the_deadline_is_closed_when_its_send_returns(
    provider: TracerProvider,
) -> None:
    """Shutdown never closes a sink under a send() outliving its deadline; the sender closes it after."""
    sink = ScriptedSink()
    sink.gate = threading.Event()
    processor = _processor(provider, sink, flush_at=1)
    end_request_spans(provider, 1)
    assert sink.entered.wait(5)
    processor.shutdown(100)
    assert not sink.closed  # still inside send()
    sink.gate.set()
    assert sink.closed_event.wait(5)


def test_delivery_counters_are_exported_as_metrics(provider: TracerProvider) -> None:
    """The per-sink enqueued/sent/retried/failed counters are published through the given MeterProvider."""
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    sink = ScriptedSink("metered", script=[retry()])
    processor = _processor(provider, sink, meter_provider=meters)
    end_request_spans(provider, 4)
    assert processor.force_flush(5000)
    data = reader.get_metrics_data()
    assert data is not None
    points = {
        point.attributes["outcome"]: point.value
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "otel_user_tracking.analytics.events"
        for point in metric.data.data_points  # type: ignore[union-attr]
        if point.attributes and point.attributes["sink"] == "metered"
    }
    assert (points["enqueued"], points["sent"], points["retried"], points["failed"]) == (4, 4, 4, 0)
    meters.shutdown()


def test_options_are_validated_when_the_processor_is_made() -> None:
    """A bad option or a non-sink raises ValueError when the processor is constructed, not later."""
    with pytest.raises(ValueError, match="flush_at"):
        out.AnalyticsSpanProcessor(sinks=[], flush_at=0)
    with pytest.raises(ValueError, match="is not a sink"):
        out.AnalyticsSpanProcessor(sinks=[object()])  # type: ignore[list-item]


def test_delivery_settings_come_from_the_environment() -> None:
    """Delivery settings parse from OTEL_PYTHON_USER_TRACKING_* variables; a bad value says the fix."""
    from otel_user_tracking.analytics.settings import DeliverySettings
    from otel_user_tracking.env import delivery_from_env

    env = {"OTEL_PYTHON_USER_TRACKING_FLUSH_AT": "25", "OTEL_PYTHON_USER_TRACKING_FLUSH_INTERVAL": "0.5"}
    assert delivery_from_env(env) == DeliverySettings(flush_at=25, flush_interval=0.5)
    with pytest.raises(ValueError, match="MAX_RETRIES='many' is not allowed; use a whole number"):
        delivery_from_env({"OTEL_PYTHON_USER_TRACKING_MAX_RETRIES": "many"})
