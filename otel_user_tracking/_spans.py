"""Reading a finished or live SDK span's attributes without the public proxy's per-lookup cost."""

from __future__ import annotations

from collections.abc import Mapping
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
