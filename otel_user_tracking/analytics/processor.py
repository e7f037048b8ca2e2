"""AnalyticsSpanProcessor: finished server spans in, analytics events out to the sinks.

``on_end`` runs on the request path (the span ends inside the ASGI middleware), so it only
checks that the span is a request span and appends it to each sink's queue: no conversion,
no I/O, no waiting. Each sink's worker converts spans to events (a pure function of the
span and the configuration captured at ``on_end``) and delivers them in batches.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import Any, Optional

from opentelemetry import metrics
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from ..config import Config, get_config, sinks_setting
from ..sinks import Sink, sinks_from_env
from ..version import __version__
from .conversion import convert_span, is_candidate
from .events import AnalyticsEvent
from .pipeline import DeliveryStats, PipelineOptions, SinkPipeline

_logger = logging.getLogger("otel_user_tracking.analytics.processor")
_processors: weakref.WeakSet[AnalyticsSpanProcessor] = weakref.WeakSet()
_processors_lock = threading.Lock()

_Item = tuple[ReadableSpan, Config]


def _expand(item: _Item) -> Sequence[AnalyticsEvent]:
    return convert_span(*item)


def _estimate(item: _Item) -> int:
    """Events a span stands for, for counting drops without converting (the pageview + events)."""
    return 1 + len(item[0].events)


class AnalyticsSpanProcessor(SpanProcessor):
    """Turn finished server spans into pageview, error and custom events for the sinks.

    Usage::

        provider.add_span_processor(AnalyticsSpanProcessor(sinks=[SQLiteSink("analytics.db")]))

    Args:
        sinks: Where events go; each gets its own queue, worker and batching. None reads
            ``OTEL_PYTHON_USER_TRACKING_SINKS`` (default: the SQLite store
            ``./otel-user-tracking.db``).
        flush_at: Send a batch when this many events are queued (default 100).
        flush_interval: Send at least every this many seconds (default 5).
        max_queue_size: Spans queued per sink; when full, new ones are dropped and counted.
        max_retries: Retries per batch on network errors, 429 and 5xx (default 5).
        max_backoff: Cap in seconds of the backoff and of ``Retry-After`` (default 30).
        meter_provider: Where the delivery counters are reported; default the global one.
    """

    def __init__(
        self,
        sinks: Optional[Iterable[Sink]] = None,
        *,
        flush_at: int = 100,
        flush_interval: float = 5.0,
        max_queue_size: int = 10_000,
        max_retries: int = 5,
        max_backoff: float = 30.0,
        initial_backoff: float = 0.5,
        meter_provider: Optional[MeterProvider] = None,
    ) -> None:
        options = PipelineOptions(
            flush_at=flush_at,
            flush_interval=flush_interval,
            max_queue_size=max_queue_size,
            max_retries=max_retries,
            max_backoff=max_backoff,
            initial_backoff=initial_backoff,
        )
        chosen = list(sinks_from_env(sinks_setting()) if sinks is None else sinks)
        for sink in chosen:
            if not isinstance(sink, Sink):
                raise ValueError(f"{sink!r} is not a sink: it needs name, max_batch_size, send() and close()")
        self._pipelines = [SinkPipeline(sink, _expand, options, _estimate) for sink in chosen]
        self._shutdown = False
        self._register_metrics(meter_provider)
        with _processors_lock:
            _processors.add(self)
        if hasattr(os, "register_at_fork"):
            ref = weakref.WeakMethod(self._after_fork)
            os.register_at_fork(after_in_child=lambda: (method := ref()) and method())

    @property
    def sinks(self) -> list[Sink]:
        return [pipeline.sink for pipeline in self._pipelines]

    def on_start(self, span: Span, parent_context: Optional[Context] = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        # Hot path: one attribute check and a deque append per sink.
        if self._shutdown or not is_candidate(span):
            return
        item = (span, get_config())
        for pipeline in self._pipelines:
            pipeline.put(item)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Deliver everything queued now; False if the timeout passed first."""
        deadline = time.monotonic() + timeout_millis / 1000
        tickets = [(pipeline, pipeline.request_flush(deadline)) for pipeline in self._pipelines]
        return all([pipeline.wait_flushed(ticket, deadline) for pipeline, ticket in tickets])

    def shutdown(self, timeout_millis: int = 30_000) -> None:
        """Deliver what is queued within the timeout, then close the sinks; later spans are ignored."""
        if self._shutdown:
            return
        self._shutdown = True
        deadline = time.monotonic() + timeout_millis / 1000
        threads = [
            threading.Thread(target=pipeline.shutdown, args=(deadline,), daemon=True)
            for pipeline in self._pipelines
        ]
        # In parallel, so one hanging backend does not eat the others' share of the timeout.
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()) + 0.5)
        with _processors_lock:
            _processors.discard(self)

    def stats(self) -> dict[str, DeliveryStats]:
        """Delivery counters per sink name."""
        return {pipeline.name: pipeline.stats() for pipeline in self._pipelines}

    def _after_fork(self) -> None:
        for pipeline in self._pipelines:
            pipeline.reinit_after_fork()

    def _register_metrics(self, meter_provider: Optional[MeterProvider]) -> None:
        """Expose the counters as one observable counter; costs nothing until a reader collects."""
        meter = metrics.get_meter("otel_user_tracking", __version__, meter_provider)
        weak_self = weakref.ref(self)

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            processor = weak_self()
            if processor is None:
                return []
            observations = []
            for name, stats in processor.stats().items():
                for outcome in ("enqueued", "sent", "retried", "dropped", "failed"):
                    value = getattr(stats, outcome)
                    observations.append(Observation(value, {"sink": name, "outcome": outcome}))
            return observations

        meter.create_observable_counter(
            "otel_user_tracking.analytics.events",
            callbacks=[observe],
            unit="{event}",
            description="Analytics events by sink and delivery outcome",
        )

    def __repr__(self) -> str:
        return f"AnalyticsSpanProcessor(sinks={[p.name for p in self._pipelines]})"


def flush_all_processors(timeout_s: float) -> bool:
    """Flush every live processor within ``timeout_s`` (the ASGI lifespan shutdown hook uses it)."""
    with _processors_lock:
        processors = list(_processors)
    deadline = time.monotonic() + timeout_s
    results = []
    for processor in processors:
        remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
        results.append(processor.force_flush(remaining_ms))
    return all(results)


def all_stats() -> dict[str, Any]:
    """Counters of every live processor, by sink name (for diagnostics)."""
    with _processors_lock:
        processors = list(_processors)
    merged: dict[str, Any] = {}
    for processor in processors:
        merged.update(processor.stats())
    return merged
