"""Rewriting what other layers put on the server span so it obeys the TagPolicy.

The ASGI, FastAPI and Starlette instrumentations set the client address and the raw query
string at span start. The middleware runs right after, while the span is still open, and
rewrites those attributes here: client addresses are removed (or replaced by the policy's
form) and sensitive query values become ``REDACTED``.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Collection, Iterable, MutableMapping, Optional
from urllib.parse import unquote_plus

from opentelemetry.trace import Span

from .. import attributes as attrs

REDACTED = "REDACTED"
_TOKEN_SPLIT = re.compile(r"[^a-z0-9]+")


class QueryScrubber:
    """``scrub_query``/``scrub_url`` for one set of words, remembering recent answers.

    The same query strings and URLs come back request after request, so a small bounded
    cache turns the per-request cost into one dict lookup.
    """

    MAX_CACHED = 4096

    def __init__(self, words: Collection[str]) -> None:
        self.words = frozenset(words)
        self._queries: dict[str, str] = {}
        self._urls: dict[str, str] = {}

    def query(self, query: str) -> str:
        return self._cached(self._queries, query, scrub_query)

    def url(self, url: str) -> str:
        return self._cached(self._urls, url, scrub_url)

    def _cached(self, cache: dict[str, str], text: str, scrub: Callable[[str, Collection[str]], str]) -> str:
        found = cache.get(text)
        if found is None:
            found = scrub(text, self.words)
            if len(cache) >= self.MAX_CACHED:
                cache.clear()
            cache[text] = found
        return found


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


def policy_rewrites(
    items: Iterable[tuple[str, Any]], addresses: Collection[str], scrubber: QueryScrubber
) -> tuple[list[str], dict[str, str]]:
    """Which attributes must go (client addresses) and which need a scrubbed value (URLs)."""
    removals = []
    rewrites: dict[str, str] = {}
    for key, value in items:
        if key in attrs.CLIENT_ADDRESS_KEYS or key in attrs.CLIENT_ADDRESS_HEADER_KEYS:
            removals.append(key)
        elif isinstance(value, str):
            if value in addresses:
                removals.append(key)
            elif key in attrs.URL_QUERY_KEYS:
                scrubbed = scrubber.query(value)
                if scrubbed != value:
                    rewrites[key] = scrubbed
            elif key in attrs.URL_WITH_QUERY_KEYS and "?" in value:
                scrubbed = scrubber.url(value)
                if scrubbed != value:
                    rewrites[key] = scrubbed
        elif isinstance(value, (tuple, list)) and any(item in addresses for item in value):
            removals.append(key)
    return removals, rewrites


def clean_attributes(
    attributes: dict[str, Any], addresses: Collection[str], scrubber: QueryScrubber
) -> dict[str, Any]:
    """Apply the policy to attributes before they are set (a plain dict, changed in place)."""
    removals, rewrites = policy_rewrites(list(attributes.items()), addresses, scrubber)
    for key in removals:
        del attributes[key]
    attributes.update(rewrites)
    return attributes


def enforce_on_span(span: Span, addresses: Collection[str], scrubber: QueryScrubber) -> dict[str, str]:
    """Apply the policy to a span another layer made; return the rewrites for the caller to set.

    Client-address attributes are removed at once; scrubbed URL values are returned so the
    caller sets them together with its own attributes in one call.
    """
    mapping = _attribute_map(span)
    if mapping is None:
        return {}
    removals, rewrites = policy_rewrites(list(mapping.items()), addresses, scrubber)
    for key in removals:
        mapping.pop(key, None)
    return rewrites
