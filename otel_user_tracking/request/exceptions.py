"""One ``exception`` event per exception, however many layers report it.

The ASGI middleware, FastAPI's exception middleware, Starlette's OpenTelemetry middleware
and our own middleware each see an escaping exception; on one span that would be several
events for one error. Every report goes through ``record_exception_once``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
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
        _record(state, exc, escaped=escaped)


def _record(
    state: RequestState, exc: BaseException, *, escaped: bool, timestamp: Optional[int] = None
) -> None:
    record = state.original_record_exception or state.span.record_exception
    record(exc, timestamp=timestamp, escaped=escaped)


def flush_pending_exceptions(state: RequestState) -> None:
    """Record the held-back exceptions, in the order they were seen, and stop holding back."""
    state.active = False
    pending, state.pending = state.pending, []
    for exc, timestamp, escaped in pending:
        if any(seen is exc for seen in state.recorded):
            continue
        state.recorded.append(exc)
        if state.span.is_recording():
            _record(state, exc, escaped=escaped, timestamp=timestamp)


def route_exceptions_through(state: RequestState) -> None:
    """Route every layer's ``span.record_exception`` through ``record_exception_once``.

    The ASGI middleware, FastAPI's exception middleware and Starlette's OpenTelemetry
    middleware each record the exception they see; on one span that would be several
    events for one error. The span's own method is kept on the state for the one real
    recording.
    """
    span = state.span
    try:
        state.original_record_exception = span.record_exception
        span.record_exception = _Hook(state)  # type: ignore[method-assign]
    except (AttributeError, TypeError):
        state.original_record_exception = None


class _Hook:
    """``span.record_exception`` while the request runs: records each exception once."""

    __slots__ = ("state",)

    def __init__(self, state: RequestState) -> None:
        self.state = state

    def __call__(
        self,
        exception: BaseException,
        attributes: Any = None,
        timestamp: Optional[int] = None,
        escaped: bool = False,
    ) -> None:
        record_exception_once(self.state, exception, escaped=escaped)
