"""What the request path hands the analytics path besides the span's attributes.

The analytics processor is one per tracer provider, but options are per app:
``UserTrackingMiddleware(app, ignore_bots=False)`` must change that app's pageviews only.
The middleware that owns a request pins its app's ``Config`` to the request's span id when
it differs from the global one, and the processor takes it back when the span ends. The
SDK hands ``on_end`` a read-only copy of the span, so the pin cannot live on the span
object; it never goes into the exported attributes either.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

from .config import Config, get_config

# span id -> the Config of the app that served it; bounded, because a span may end where
# no analytics processor takes its pin back (a provider without one).
_MAX_PINNED = 4096
_pinned: dict[int, Config] = {}
_lock = threading.Lock()


def pin_config(span: Any, config: Config) -> None:
    """Remember the ``Config`` of the app that served the request, unless it is the global one."""
    if config is get_config():
        return
    span_id = span.get_span_context().span_id
    with _lock:
        if len(_pinned) >= _MAX_PINNED:
            del _pinned[next(iter(_pinned))]
        _pinned[span_id] = config


def take_pinned_config(span: Any) -> Optional[Config]:
    """The ``Config`` pinned for this span (forgetting it), or None for the global one."""
    if not _pinned:
        return None
    context = span.context
    if context is None:
        return None
    with _lock:
        return _pinned.pop(context.span_id, None)
