"""A span processor for the spans started during a request: the user's id, the policy's text.

It copies the request's ``user.id`` onto them, and makes each one's ``record_exception`` and
``set_status`` a ``SpanGuard``, so an exception recorded on a child span (FastAPI's own
``fastapi.endpoint`` span records the one the handler raises) has its text under the policy
as on the server span.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Optional

from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span, SpanProcessor

from .. import attributes as attrs
from .current import REQUEST as _current
from .span_guard import SpanGuard


class UserIdSpanProcessor(SpanProcessor):
    """Sets ``user.id`` on every span started while a known user's request is in flight,
    and guards its exception text (see the module docstring).

    Reads one contextvar per span start; does nothing outside requests.
    """

    def on_start(self, span: Span, parent_context: Optional[Context] = None) -> None:
        # Also after the request is over (a task it started): a retired state keeps the user id.
        state = _current.get()
        if state is None or (not state.retired and span is state.span):
            return
        SpanGuard(span, state.config, None if state.retired else state.exceptions).install()
        if state.user_id is not None and state.config.child_spans:
            span.set_attribute(attrs.USER_ID, state.user_id)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is held back: True (the SDK's default returns None in 1.39-1.41, a failure)."""
        return True


_registered: weakref.WeakSet[Any] = weakref.WeakSet()
_lock = threading.Lock()


def ensure_user_id_processor(tracer_provider: Any) -> bool:
    """Add the processor to an SDK tracer provider once; False when the provider has no SDK API."""
    add = getattr(tracer_provider, "add_span_processor", None)
    if add is None:
        return False
    with _lock:
        if tracer_provider in _registered:
            return True
        add(UserIdSpanProcessor())
        _registered.add(tracer_provider)
    return True
