"""AnalyticsSpanProcessor: finished server spans in, analytics events out to the sinks.

``on_end`` runs on the request path (the span ends inside the ASGI middleware), so it only
checks that the span is a server span and queues it with its app's ``Config``: no
conversion, no I/O, no waiting. The span queue's converter thread turns spans into events once,
and each sink's pipeline delivers them in batches.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Optional, Union

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from .._workers import awaited
from ..config import get_config
from ..env import outbox_settings, sinks_setting
from ..pinned_config import take_pinned_config
from ..salts.current import release as release_salts
from ..salts.current import use_store_salts
from ..sink_urls import sinks_from_env
from ..version import __version__
from .conversion import event_rows, is_candidate
from .durable import DurablePipeline
from .outbox import Outbox
from .pipeline import OUTCOMES, PROBLEMS, DeliveryStats, SinkPipeline
from .settings import DeliverySettings
from .sink import Sink, sink_identity, sink_traits
from .span_queue import SpanIntake

_logger = logging.getLogger(__name__)
Observations = Iterable[Observation]
_processors: weakref.WeakSet[AnalyticsSpanProcessor] = weakref.WeakSet()
_processors_lock = threading.Lock()
DEFAULT_OUTBOX = Path("otel-user-tracking-outbox.db")
EXIT_GRACE = 1.0  # seconds after the app's shutdown deadline in which shutdown() still keeps to it


class AnalyticsSpanProcessor(SpanProcessor):
    """Turn finished server spans into pageview, error and custom events for the sinks.

    Usage::

        provider.add_span_processor(AnalyticsSpanProcessor(sinks=[SQLiteSink("analytics.db")]))

    Args:
        sinks: Where events go; each gets its own queue, sender thread and batching. None
            reads ``OTEL_PYTHON_USER_TRACKING_SINKS`` (default: the SQLite store
            ``./otel-user-tracking.db``).
        settings: Batching, queue, retry and shutdown settings (``DeliverySettings``); or
            give any of its fields as keywords (``flush_at=200``).
        durable: Store events for remote sinks in a local outbox before sending them, so a
            crash or an outage loses nothing accepted: True (``./otel-user-tracking-outbox.db``),
            a path, or False. None reads ``OTEL_PYTHON_USER_TRACKING_OUTBOX``.
        max_outbox_size: Undelivered events kept per remote sink in the outbox.
        meter_provider: Where the delivery counters are reported; default the global one.
    """

    def __init__(
        self,
        sinks: Optional[Iterable[Sink]] = None,
        *,
        settings: Optional[DeliverySettings] = None,
        durable: Union[bool, str, Path, None] = None,
        max_outbox_size: Optional[int] = None,
        meter_provider: Optional[MeterProvider] = None,
        **options: float,
    ) -> None:
        self.settings = settings or DeliverySettings(**options)  # type: ignore[arg-type]
        chosen = list(sinks_from_env(sinks_setting()) if sinks is None else sinks)
        for sink in chosen:
            if not isinstance(sink, Sink):
                raise ValueError(f"{sink!r} is not a sink: it needs name, max_batch_size, send() and close()")
        remote = [sink_traits(sink).remote for sink in chosen]
        self.outbox = _outbox(durable, max_outbox_size) if any(remote) else None
        if None in remote and _durable_setting(durable):
            undeclared = ", ".join(sink.name for sink, says in zip(chosen, remote) if says is None)
            raise ValueError(
                f"durable delivery is on and sink {undeclared} does not say whether it sends over the "
                "network; give its class remote = True (its events then go through the outbox) or "
                "remote = False"
            )
        self._pipelines = self._make_pipelines(chosen)
        self.salts = use_store_salts(self, chosen, secret=get_config().visitor_secret is not None)
        self._intake = SpanIntake(self._pipelines, self.settings, event_rows)
        self._shutdown = False
        self._exit_deadline: Optional[float] = None
        self._register_metrics(meter_provider)
        with _processors_lock:
            _processors.add(self)
        if hasattr(os, "register_at_fork"):
            ref = weakref.WeakMethod(self._after_fork)
            os.register_at_fork(after_in_child=lambda: (method := ref()) and method())

    def _make_pipelines(self, sinks: list[Sink]) -> list[SinkPipeline]:
        """A pipeline per sink, named for people (``name``, ``name#2`` for sinks that share a
        name) and, through the outbox, keyed by the sink's identity (numbered alike)."""
        names = numbered([sink.name for sink in sinks])
        outbox = self.outbox
        if outbox is None:
            return [SinkPipeline(sink, self.settings, name=name) for sink, name in zip(sinks, names)]
        remote = [sink for sink in sinks if _is_remote(sink)]
        keys = dict(zip(map(id, remote), numbered([sink_identity(sink) for sink in remote])))
        pipelines = [
            DurablePipeline(sink, self.settings, outbox, name=name, key=keys[id(sink)])
            if id(sink) in keys
            else SinkPipeline(sink, self.settings, name=name)
            for sink, name in zip(sinks, names)
        ]
        _report_strays(outbox, pipelines)
        return pipelines

    @property
    def sinks(self) -> list[Sink]:
        return [pipeline.sink for pipeline in self._pipelines]

    def on_end(self, span: ReadableSpan) -> None:
        # Hot path: one attribute check, one getattr and a deque append.
        if self._shutdown or not is_candidate(span):
            return
        self._intake.put((span, take_pinned_config(span) or get_config()))

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Deliver everything queued now; False if the timeout passed first."""
        deadline = time.monotonic() + timeout_millis / 1000
        with awaited():
            converted = self._intake.flush(deadline)
            tickets = [(pipeline, pipeline.request_flush(deadline)) for pipeline in self._pipelines]
            flushed = all([pipeline.wait_flushed(ticket, deadline) for pipeline, ticket in tickets])
        return flushed and converted

    def expect_exit(self, deadline: float) -> None:
        """The app is shutting down with this monotonic deadline (the ASGI lifespan's flush).

        A ``shutdown()`` soon after (interpreter exit: older uvicorn releases exit normally
        after SIGTERM, and the SDK's atexit hook shuts the provider down) keeps to it rather
        than spending a second budget on a backend that already did not answer.
        """
        self._exit_deadline = deadline

    def shutdown(self, timeout_millis: Optional[int] = None) -> None:
        """Deliver what is queued within the timeout (default ``settings.shutdown_timeout``),
        then close the sinks; what is undelivered then is counted. Later spans are ignored."""
        if self._shutdown:
            return
        self._shutdown = True
        budget = self.settings.shutdown_timeout if timeout_millis is None else timeout_millis / 1000
        now = time.monotonic()
        deadline = now + budget
        if self._exit_deadline is not None and now < self._exit_deadline + EXIT_GRACE:
            deadline = min(deadline, max(now, self._exit_deadline))  # one budget for the whole exit
        with awaited():
            self._stop_workers(deadline)
        if self.outbox is not None:
            self.outbox.close()
        release_salts(self)
        with _processors_lock:
            _processors.discard(self)

    def _stop_workers(self, deadline: float) -> None:
        self._intake.stop(deadline)
        threads = [
            threading.Thread(target=pipeline.shutdown, args=(deadline,), daemon=True)
            for pipeline in self._pipelines
        ]
        # In parallel, so one hanging backend does not eat the others' share of the budget.
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()) + 0.5)

    def stats(self) -> dict[str, DeliveryStats]:
        """Delivery counters per sink name (sinks that share a name are numbered: ``name#2``)."""
        return {pipeline.name: pipeline.stats() for pipeline in self._pipelines}

    def _after_fork(self) -> None:
        if self.outbox is not None:
            self.outbox.after_fork()
        self._intake.after_fork()
        for pipeline in self._pipelines:
            pipeline.after_fork()

    def _register_metrics(self, meter_provider: Optional[MeterProvider]) -> None:
        """Expose the counters as observable counters; they cost nothing until a reader collects."""
        meter = metrics.get_meter("otel_user_tracking", __version__, meter_provider)
        weak_self = weakref.ref(self)

        def observer(fields: tuple[str, ...], label: str) -> Callable[[CallbackOptions], Observations]:
            def observe(options: CallbackOptions) -> Iterable[Observation]:
                processor = weak_self()
                if processor is None:
                    return []
                return [
                    Observation(getattr(stats, field), {"sink": name, label: field})
                    for name, stats in processor.stats().items()
                    for field in fields
                ]

            return observe

        meter.create_observable_counter(
            "otel_user_tracking.analytics.events",
            callbacks=[observer(OUTCOMES, "outcome")],
            unit="{event}",
            description="Analytics events by sink and delivery outcome",
        )
        meter.create_observable_counter(
            "otel_user_tracking.analytics.problems",
            callbacks=[observer(PROBLEMS, "problem")],
            unit="{problem}",
            description="Outbox errors retried and sender restarts, by sink",
        )

    def __repr__(self) -> str:
        return f"AnalyticsSpanProcessor(sinks={[p.name for p in self._pipelines]})"


def numbered(names: list[str]) -> list[str]:
    """``names`` made unique in order: the second ``a`` is ``a#2``, the third ``a#3``."""
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return unique


def _report_strays(outbox: Outbox, pipelines: list[SinkPipeline]) -> None:
    """Log once what waits in the outbox for a sink named like ours but configured otherwise."""
    durable = [pipeline for pipeline in pipelines if isinstance(pipeline, DurablePipeline)]
    names = {pipeline.name for pipeline in durable} | {pipeline.sink.name for pipeline in durable}
    try:
        strays = outbox.strays(names, {pipeline.key for pipeline in durable})
    except (sqlite3.Error, OSError):
        return  # the file does not answer now: its sender will say so
    for name, count in sorted(strays.items()):
        _logger.warning(
            "analytics sink %s: %d events in the outbox %s were stored for another configuration "
            "of a sink so named (another credential or path, or an older version); they are not "
            "sent with this one and stay in the file",
            name,
            count,
            outbox.path,
        )


def _is_remote(sink: Sink) -> bool:
    """Sinks that send over the network say so (``remote = True``); local ones need no outbox."""
    return bool(sink_traits(sink).remote)


def _durable_setting(durable: Union[bool, str, Path, None]) -> Union[bool, str, Path]:
    """The processor's ``durable`` argument, else ``OTEL_PYTHON_USER_TRACKING_OUTBOX``'s path, else False."""
    return (outbox_settings()[0] or False) if durable is None else durable


def _outbox(durable: Union[bool, str, Path, None], max_events: Optional[int]) -> Optional[Outbox]:
    durable = _durable_setting(durable)
    if durable is False:
        return None
    env_max = outbox_settings()[1]
    path = DEFAULT_OUTBOX if durable is True else Path(durable)
    return Outbox(path, max_events=max_events or env_max)


def live_processors() -> list[AnalyticsSpanProcessor]:
    """Every processor not yet shut down (the ASGI lifespan shutdown flushes them)."""
    with _processors_lock:
        return list(_processors)
