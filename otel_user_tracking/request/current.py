"""The request in flight in this context, in a contextvar: under any concurrency each request
sees only its own state (``state.py``), and code the request's state depends on can find it
without importing that module."""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from .state import RequestState

REQUEST: contextvars.ContextVar[Optional[RequestState]] = contextvars.ContextVar(
    "otel_user_tracking_request", default=None
)
