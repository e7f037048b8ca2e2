"""Per-request state carried in a contextvar.

A contextvar (not a global) holds the request's server span and user, so under any
concurrency each request sees only its own user, and ``set_user()`` reaches the server span
even when called under a child span.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from opentelemetry.trace import Span

from ..handoff import pin_config
from .identity import UserInfo

if TYPE_CHECKING:
    from ..config import Config


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
        from .exceptions import deduplicate_exception_events

        deduplicate_exception_events(self)
        pin_config(self.span, self.config)


_current: contextvars.ContextVar[Optional[RequestState]] = contextvars.ContextVar(
    "otel_user_tracking_request", default=None
)


def current_request() -> Optional[RequestState]:
    """The state of the request in flight in this context, or None outside a request."""
    return _current.get()
