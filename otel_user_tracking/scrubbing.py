"""Rewriting what other layers put on the server span so it obeys the TagPolicy.

The ASGI, FastAPI and Starlette instrumentations set the client address and the raw query
string at span start. The middleware runs right after, while the span is still open, and
rewrites those attributes here: client addresses are removed (or replaced by the policy's
form) and sensitive query values become ``REDACTED``.
"""

from __future__ import annotations

import re
from typing import Any, Collection, MutableMapping, Optional
from urllib.parse import unquote_plus

from opentelemetry.trace import Span

from . import attributes as attrs

REDACTED = "REDACTED"
_TOKEN_SPLIT = re.compile(r"[^a-z0-9]+")


def is_sensitive_key(key: str, words: Collection[str]) -> bool:
    """``key`` is a scrub word, holds one as a ``_``/``-``/``.`` separated token, or ends with one."""
    lowered = key.lower()
    if lowered in words:
        return True
    if any(token in words for token in _TOKEN_SPLIT.split(lowered) if token):
        return True
    return any(len(word) >= 5 and lowered.endswith(word) for word in words)


def scrub_query(query: str, words: Collection[str]) -> str:
    """Replace the values of sensitive parameters with ``REDACTED``, keeping everything else byte for byte."""
    if not query or not words:
        return query
    parts = query.split("&")
    changed = False
    for index, part in enumerate(parts):
        key, sep, _value = part.partition("=")
        if sep and is_sensitive_key(unquote_plus(key), words):
            parts[index] = f"{key}={REDACTED}"
            changed = True
    return "&".join(parts) if changed else query


def scrub_url(url: str, words: Collection[str]) -> str:
    """Scrub the query part of a URL or a request target (``/path?query``)."""
    path, sep, query = url.partition("?")
    if not sep:
        return url
    fragment = ""
    if "#" in query:
        query, _, rest = query.partition("#")
        fragment = "#" + rest
    return f"{path}?{scrub_query(query, words)}{fragment}"


def _attribute_map(span: Span) -> Optional[MutableMapping[str, Any]]:
    """The SDK span's attribute mapping, which (unlike the API) allows removing a key."""
    mapping = getattr(span, "_attributes", None)
    return mapping if isinstance(mapping, MutableMapping) else None


def enforce_on_span(
    span: Span,
    addresses: Collection[str],
    client_value: Optional[str],
    words: Collection[str],
) -> None:
    """Make the span's existing attributes obey the policy.

    Args:
        span: The open server span.
        addresses: Every address the request mentions (peer, forwarded hops): any attribute
            that names one is removed.
        client_value: What the policy exports as ``client.address`` (kept, anonymized), or None.
        words: Sensitive query-parameter names.
    """
    mapping = _attribute_map(span)
    if mapping is None:
        return
    removals = []
    rewrites: dict[str, str] = {}
    for key, value in list(mapping.items()):
        if key in attrs.CLIENT_ADDRESS_KEYS or key in attrs.CLIENT_ADDRESS_HEADER_KEYS:
            removals.append(key)
        elif isinstance(value, str):
            if value in addresses:
                removals.append(key)
            elif key in attrs.URL_QUERY_KEYS:
                scrubbed = scrub_query(value, words)
                if scrubbed != value:
                    rewrites[key] = scrubbed
            elif key in attrs.URL_WITH_QUERY_KEYS and "?" in value:
                scrubbed = scrub_url(value, words)
                if scrubbed != value:
                    rewrites[key] = scrubbed
        elif isinstance(value, (tuple, list)) and any(item in addresses for item in value):
            removals.append(key)
    for key in removals:
        mapping.pop(key, None)
    for key, text in rewrites.items():
        span.set_attribute(key, text)
    if client_value is not None:
        span.set_attribute(attrs.CLIENT_ADDRESS, client_value)
