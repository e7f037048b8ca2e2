"""One ``exception`` event per exception, however many layers report it.

The ASGI middleware, FastAPI's exception middleware, Starlette's OpenTelemetry middleware
and our own middleware each see an escaping exception; on one span that would be several
events for one error. Every report goes through ``record_exception_once``.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from opentelemetry.trace import Span

from .state import RequestState


def record_exception_once(state: RequestState, exc: BaseException, *, escaped: bool) -> None:
    """Add one ``exception`` event for ``exc``, however many layers report it.

    While the middleware is still inside the request, handled exceptions are held back and
    recorded when it leaves, so that one that escapes is recorded once, with escaped=true.
    """
    if any(seen is exc for seen in state.recorded):
        return
    if escaped and any(seen is exc for seen in state.handled):
        escaped = False
    if state.active:
        for index, (seen, timestamp, was_escaped) in enumerate(state.pending):
            if seen is exc:
                state.pending[index] = (seen, timestamp, was_escaped or escaped)
                break
        else:
            state.pending.append((exc, time.time_ns(), escaped))
        if not escaped:
            return
        flush_pending_exceptions(state)
        return
    state.recorded.append(exc)
    if state.span.is_recording():
        _record(state.span, exc, escaped=escaped)


def _record(span: Span, exc: BaseException, *, escaped: bool, timestamp: Optional[int] = None) -> None:
    original = getattr(span, "_otel_user_tracking_record_exception", None)
    (original or span.record_exception)(exc, timestamp=timestamp, escaped=escaped)


def flush_pending_exceptions(state: RequestState) -> None:
    """Record the held-back exceptions, in the order they were seen, and stop holding back."""
    state.active = False
    pending, state.pending = state.pending, []
    for exc, timestamp, escaped in pending:
        if any(seen is exc for seen in state.recorded):
            continue
        state.recorded.append(exc)
        if state.span.is_recording():
            _record(state.span, exc, escaped=escaped, timestamp=timestamp)


def deduplicate_exception_events(state: RequestState) -> None:
    """Route every layer's ``span.record_exception`` through ``record_exception_once``.

    The ASGI middleware, FastAPI's exception middleware and Starlette's OpenTelemetry
    middleware each record the exception they see; on one span that would be several
    events for one error.
    """
    span = state.span
    original = span.record_exception

    def record_exception(
        exception: BaseException,
        attributes: Any = None,
        timestamp: Optional[int] = None,
        escaped: bool = False,
    ) -> None:
        record_exception_once(state, exception, escaped=escaped)

    try:
        span._otel_user_tracking_record_exception = original  # type: ignore[attr-defined]
        span.record_exception = record_exception  # type: ignore[method-assign]
    except (AttributeError, TypeError):
        return
