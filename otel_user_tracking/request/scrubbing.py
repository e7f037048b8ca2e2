"""Rewriting what other layers put on the server span so it obeys the TagPolicy.

The ASGI, FastAPI and Starlette instrumentations set the client address and the raw query
string at span start. The middleware runs right after, while the span is still open, and
rewrites those attributes here: client addresses are removed (or replaced by the policy's
form) and sensitive query values become ``REDACTED``. Captured headers
(``http.request.header.*``, ``http.response.header.*``) get the same treatment: a header
whose name is sensitive loses its value, URL parameters are scrubbed, and IP addresses in
any captured value become ``REDACTED`` (the client address leaves only as
``client.address``, in the policy's form).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Callable, Collection, Iterable, MutableMapping, Optional
from urllib.parse import unquote_plus

from opentelemetry.trace import Span

from .. import attributes as attrs

REDACTED = "REDACTED"
# Words (camelCase humps included), runs of capitals, runs of digits: apiKeyId -> api Key Id.
_KEY_PART = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
_PAIR = re.compile(r"(?:^|(?<=[&;]))([^&;=]*)=([^&;]*)")
_HEADER_PREFIXES = ("http.request.header.", "http.response.header.")
_IP_LITERAL = re.compile(
    r"(?<![0-9A-Za-z.:])(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7})"
    r"(?:%[0-9A-Za-z]+)?(?![0-9A-Za-z.:])"
)
_MIN_INNER_WORD = 5  # words this long also match inside a part: resettoken, mysecretkey


class KeyMatcher:
    """Decides whether a parameter name is sensitive, for one set of scrub words.

    A key matches when, lower-cased and split into parts at separators, camelCase humps and
    digits (``apiKeyId`` -> api, key, id), a part or a run of adjacent parts spells a scrub
    word (``api_key``), or a scrub word of five or more letters occurs inside the key
    (``resettoken``). Answers for short keys are remembered in a small bounded table; long
    keys (which only an attacker sends) are decided afresh and never kept.
    """

    MAX_CACHED_KEYS = 1024
    MAX_CACHED_KEY_CHARS = 64

    def __init__(self, words: Collection[str]) -> None:
        self.words = frozenset(_NOT_ALNUM.sub("", word.lower()) for word in words) - {""}
        self._inner = tuple(word for word in self.words if len(word) >= _MIN_INNER_WORD)
        self._longest = max((len(word) for word in self.words), default=0)
        self._known: dict[str, bool] = {}

    def __call__(self, key: str) -> bool:
        if len(key) > self.MAX_CACHED_KEY_CHARS:
            return self._decide(key)
        found = self._known.get(key)
        if found is None:
            found = self._decide(key)
            if len(self._known) >= self.MAX_CACHED_KEYS:
                self._known.clear()
            self._known[key] = found
        return found

    def _decide(self, key: str) -> bool:
        if not self.words:
            return False
        parts = [part.lower() for part in _KEY_PART.findall(key)]
        words = self.words
        for start in range(len(parts)):
            run = ""
            for part in parts[start:]:
                run += part
                if run in words:
                    return True
                if len(run) >= self._longest:
                    break
        joined = "".join(parts)
        return any(word in joined for word in self._inner)


def is_sensitive_key(key: str, words: Collection[str]) -> bool:
    """``key`` names a sensitive parameter for ``words``; see ``KeyMatcher`` for the rules."""
    return KeyMatcher(words)(key)


def _scrub_pairs(text: str, sensitive: KeyMatcher) -> str:
    """Replace the values of sensitive ``key=value`` pairs (``&`` or ``;`` separated)."""
    if "=" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if sensitive(unquote_plus(key) if "%" in key or "+" in key else key):
            return f"{key}={REDACTED}"
        return match.group(0)

    return _PAIR.sub(replace, text)


class QueryScrubber:
    """``query``/``url`` scrubbing for one set of words, precomputed once per configuration.

    The same short query strings come back request after request, so answers for texts of
    at most ``MAX_CACHED_CHARS`` are remembered in two tables of at most ``MAX_CACHED``
    entries (a few hundred KB at worst). Longer texts, which a client can make huge and
    unique, are scrubbed afresh each time and never kept.
    """

    MAX_CACHED = 256
    MAX_CACHED_CHARS = 256

    def __init__(self, words: Collection[str]) -> None:
        self.sensitive = KeyMatcher(words)
        self.words = self.sensitive.words
        self._queries: dict[str, str] = {}
        self._urls: dict[str, str] = {}

    def query(self, query: str) -> str:
        """A query string (``a=1&token=x``) with sensitive values replaced, the rest byte for byte."""
        if not query or not self.words:
            return query
        return self._remembered(self._queries, query, self._scrub_query)

    def url(self, url: str) -> str:
        """A URL or request target with its query and fragment parameters scrubbed."""
        if not self.words or "=" not in url:
            return url
        return self._remembered(self._urls, url, self._scrub_url)

    def _remembered(self, table: dict[str, str], text: str, scrub: Callable[[str], str]) -> str:
        if len(text) > self.MAX_CACHED_CHARS:
            return scrub(text)
        found = table.get(text)
        if found is None:
            found = scrub(text)
            if len(table) >= self.MAX_CACHED:
                table.clear()
            table[text] = found
        return found

    def _scrub_query(self, query: str) -> str:
        return _scrub_pairs(query, self.sensitive)

    def _scrub_url(self, url: str) -> str:
        head, hash_sign, fragment = url.partition("#")
        path, question_mark, query = head.partition("?")
        if question_mark:
            head = f"{path}?{_scrub_pairs(query, self.sensitive)}"
        if hash_sign:
            return f"{head}#{_scrub_pairs(fragment, self.sensitive)}"
        return head


def _without_addresses(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        try:
            ipaddress.ip_address(match.group(0).split("%", 1)[0])
        except ValueError:
            return match.group(0)
        return REDACTED

    return _IP_LITERAL.sub(replace, text) if ("." in text or ":" in text) else text


def scrub_header_value(name: str, value: str, scrubber: QueryScrubber) -> str:
    """One captured header value under the policy: credentials, URL parameters and addresses go."""
    if scrubber.sensitive(name):
        return REDACTED
    if "=" in value:
        value = scrubber.url(value) if ("?" in value or "#" in value) else scrubber.query(value)
    return _without_addresses(value)


def _scrub_captured_header(key: str, value: Any, scrubber: QueryScrubber) -> Any:
    """The policy-clean value of a captured header attribute (a string or a sequence of them)."""
    name = key.split(".header.", 1)[1]
    if isinstance(value, str):
        return scrub_header_value(name, value, scrubber)
    if isinstance(value, (tuple, list)):
        return tuple(
            scrub_header_value(name, item, scrubber) if isinstance(item, str) else item for item in value
        )
    return value


def _attribute_map(span: Span) -> Optional[MutableMapping[str, Any]]:
    """The SDK span's attribute mapping, which (unlike the API) allows removing a key."""
    mapping = getattr(span, "_attributes", None)
    return mapping if isinstance(mapping, MutableMapping) else None


def policy_rewrites(
    items: Iterable[tuple[str, Any]], addresses: Optional[Collection[str]], scrubber: QueryScrubber
) -> tuple[list[str], dict[str, Any]]:
    """Which attributes must go (client addresses) and which need a scrubbed value (URLs, headers).

    ``addresses`` None means the policy keeps the client address (``ip="keep"``): the address
    attributes other layers set stay, and no value goes for being equal to an address (a
    ``server.address`` that is the client's own, as on loopback).
    """
    removals = []
    rewrites: dict[str, Any] = {}
    keep = addresses is None
    if addresses is None:
        addresses = ()
    for key, value in items:
        if (key in attrs.CLIENT_ADDRESS_KEYS and not keep) or key in attrs.CLIENT_ADDRESS_HEADER_KEYS:
            removals.append(key)
        elif key.startswith(_HEADER_PREFIXES):
            scrubbed = _scrub_captured_header(key, value, scrubber)
            if scrubbed != value:
                rewrites[key] = scrubbed
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
    attributes: dict[str, Any], addresses: Optional[Collection[str]], scrubber: QueryScrubber
) -> dict[str, Any]:
    """Apply the policy to attributes before they are set (a plain dict, changed in place)."""
    removals, rewrites = policy_rewrites(list(attributes.items()), addresses, scrubber)
    for key in removals:
        del attributes[key]
    attributes.update(rewrites)
    return attributes


def enforce_on_span(
    span: Span, addresses: Optional[Collection[str]], scrubber: QueryScrubber
) -> dict[str, Any]:
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
