"""Reading an SDK span's attributes and events without the public API's copies and locks.

Both run once per request (the middleware checks an attribute, the conversion reads them
all), so the public accessors' costs add up: ``span.attributes`` is a proxy whose every
lookup is a Python-level call, ``span.events`` copies the events under a lock. Each reader
falls back to the public API for spans that are not the SDK's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

_NONE: Mapping[str, Any] = {}


def span_attributes(span: Any) -> Mapping[str, Any]:
    """The span's attributes as a plain mapping, read-only by convention.

    The public ``span.attributes`` is a ``MappingProxyType`` over the SDK's
    ``BoundedAttributes``, whose lookups are Python-level calls that raise ``KeyError`` for
    a missing key; its inner dict answers the same questions at C speed. Falls back to the
    public API for spans that are not the SDK's.
    """
    bounded = getattr(span, "_attributes", None)
    inner = getattr(bounded, "_dict", None)
    if isinstance(inner, dict):
        return inner
    return getattr(span, "attributes", None) or _NONE


def span_events(span: Any) -> Sequence[Any]:
    """The events of a finished span, without the copy (nothing adds events once it ended)."""
    inner = getattr(getattr(span, "_events", None), "_dq", None)
    if inner is not None:
        return inner  # type: ignore[no-any-return]
    return getattr(span, "events", None) or ()
