"""Per-request state carried in a contextvar, and the calls handlers make on it.

A contextvar (not a global) holds the request's server span and user, so under any
concurrency each request sees only its own user, and ``set_user()`` reaches the server span
even when called under a child span.
"""

from __future__ import annotations

import contextvars
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Optional

from opentelemetry.trace import Span

from .. import attributes as attrs
from .._errors import report_internal_error
from ..analytics.events import new_event_id, validate_event_name, validate_meta
from .identity import UserInfo

if TYPE_CHECKING:
    from ..config import Config

_logger = logging.getLogger(__name__)


@dataclass
class RequestState:
    """What the middleware knows about the request in flight."""

    span: Span
    scope: Any
    config: Config
    explicit_user: Optional[UserInfo] = None
    applied_user: Optional[UserInfo] = None
    user_id: Optional[str] = None  # policy-processed, copied onto child spans
    status_code: Optional[int] = None
    active: bool = True  # False once the response has ended
    finished: bool = False
    created: bool = False  # the span is ours to name and to give its status
    status_setter: Optional[Any] = None  # sets the HTTP status on a span we made
    recorded: list[BaseException] = field(default_factory=list)
    # exceptions an exception handler answered: never "escaped", whoever reports them later
    handled: list[BaseException] = field(default_factory=list)
    # exceptions seen while active, recorded when the response ends: (exc, timestamp, escaped)
    pending: list[tuple[BaseException, int, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        deduplicate_exception_events(self)


_current: contextvars.ContextVar[Optional[RequestState]] = contextvars.ContextVar(
    "otel_user_tracking_request", default=None
)


def current_request() -> Optional[RequestState]:
    """The state of the request in flight in this context, or None outside a request."""
    return _current.get()


def capture_exception(exc: BaseException) -> None:
    """Record a handled exception as one ``exception`` event on the request's server span."""
    state = _current.get()
    if state is None:
        return
    try:
        record_exception_once(state, exc, escaped=False)
    except Exception as error:
        report_internal_error("capture_exception", error)


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


def track(name: str, meta: Optional[Mapping[str, Any]] = None) -> None:
    """Record a custom analytics event on the request's server span.

    Usage: ``track("CHECKOUT_COMPLETED", meta={"plan": "pro"})``. The event shows in the
    trace as a span event, and the AnalyticsSpanProcessor turns it into a custom event.
    Raises ``ValueError`` at the call for a bad name or meta (1-256 characters, no control
    characters; meta values str/int/float/bool, at most 100 keys). Outside a request the
    event has nowhere to go: it is logged at debug level and dropped.
    """
    validate_event_name(name)
    clean = validate_meta(meta)
    state = _current.get()
    if state is None:
        _logger.debug("track() called outside a request; event dropped")
        return
    try:
        event_attributes: dict[str, Any] = {
            attrs.EVENT_TYPE: "custom",
            attrs.EVENT_ID: new_event_id(),
        }
        for key, value in clean.items():
            event_attributes[attrs.EVENT_META_PREFIX + key] = value
        state.span.add_event(name, event_attributes)
    except Exception as exc:
        report_internal_error("track", exc)
