"""In-process test sinks with scripted answers, for the pipeline's own logic.

The HTTP behaviour (503, 429, hangs, refused connections) is tested against a real local
server in test_pipeline_http.py; these sinks script the sink contract itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Optional, Union

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

from otel_user_tracking import attributes as attrs
from otel_user_tracking.analytics.events import AnalyticsEvent
from otel_user_tracking.sinks import PermanentSinkError, RetryableSinkError, SendResult

Answer = Union[Exception, SendResult, None]


class ScriptedSink:
    """Records every ``send``; answers from a script: an exception to raise, a ``SendResult``
    to return (its ``retry`` events are not delivered), or None (all delivered).

    ``gate``, when set, makes ``send`` wait for it first: a sink that hangs until released.
    """

    remote = False  # tests that want the outbox set it to True

    def __init__(
        self,
        name: str = "scripted",
        max_batch_size: int = 1000,
        script: Sequence[Answer] = (),
        answer: Optional[Callable[[Sequence[AnalyticsEvent]], Answer]] = None,
    ) -> None:
        self.name = name
        self.max_batch_size = max_batch_size
        self.script = list(script)
        self.answer = answer
        self.calls: list[list[AnalyticsEvent]] = []
        self.delivered: list[AnalyticsEvent] = []
        self.closed = False
        self.closed_event = threading.Event()  # set by close(), to wait on
        self.gate: Optional[threading.Event] = None
        self.entered = threading.Event()  # set when a send() call has begun
        self._changed = threading.Condition()

    def send(self, batch: Sequence[AnalyticsEvent]) -> Optional[SendResult]:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(30)
        with self._changed:
            self.calls.append(list(batch))
            error = self.script.pop(0) if self.script else (self.answer(batch) if self.answer else None)
            if error is None:
                self.delivered.extend(batch)
            elif isinstance(error, SendResult):
                again = {event.event_id for event in error.retry}
                self.delivered.extend(event for event in batch if event.event_id not in again)
            self._changed.notify_all()
        if isinstance(error, Exception):
            raise error
        return error

    def close(self) -> None:
        self.closed = True
        self.closed_event.set()

    def wait_delivered(self, count: int, timeout: float = 10.0) -> list[AnalyticsEvent]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.delivered) >= count, timeout):
                delivered, calls = len(self.delivered), len(self.calls)
                raise TimeoutError(f"{delivered} of {count} events delivered; calls={calls}")
            return list(self.delivered)

    def wait_calls(self, count: int, timeout: float = 10.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.calls) >= count, timeout):
                raise TimeoutError(f"{len(self.calls)} of {count} send calls")


def retry(message: str = "HTTP 503", **options: object) -> RetryableSinkError:
    return RetryableSinkError(message, **options)  # type: ignore[arg-type]


def permanent(message: str = "HTTP 400: bad project id") -> PermanentSinkError:
    return PermanentSinkError(message)


def end_request_spans(provider: TracerProvider, count: int, *, path: str = "/p", **extra: object) -> None:
    """End ``count`` SERVER spans shaped like the middleware's (one pageview each)."""
    tracer = provider.get_tracer("tests")
    for index in range(count):
        attributes = {
            attrs.REQUEST_TYPE: "http",
            "http.method": "GET",
            "http.target": f"{path}?n={index}",
            "http.status_code": 200,
            **extra,
        }
        with tracer.start_as_current_span(f"GET {path}", kind=SpanKind.SERVER, attributes=attributes):  # type: ignore[arg-type]
            pass
