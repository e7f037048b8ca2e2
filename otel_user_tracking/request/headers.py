"""Reading the request facts the policy and the analytics need, once per request.

The facts are protocol-neutral (``RequestFacts``); ``read_facts`` reads them from an ASGI
scope, ``read_environ_facts`` from a WSGI environ, with the same caps. Header bytes are
decoded as latin-1 (never fails, whatever the client sent) and every value
kept is length-capped, so odd or huge headers cost little and break nothing. Forwarding
chains are capped from the right (the end the trusted proxies write), hop by hop.
"""

from __future__ import annotations

import re
from typing import Any, MutableMapping, NamedTuple, Optional

from .client_address import MAX_HOP_CHARS, MAX_HOPS

_MAX_HEADER_CHARS = 2048
_MAX_SHORT = 256
_MAX_SESSION = 128
_MAX_DISTINCT_ID = 200  # PostHog's own limit on a distinct id
# posthog-js's tracing headers (PostHog's Django middleware reads the same): a session id
# read when the app's own session header is absent, and the frontend's distinct id.
POSTHOG_SESSION_HEADER = "x-posthog-session-id"
POSTHOG_DISTINCT_HEADER = "x-posthog-distinct-id"
_POSTHOG_SESSION = POSTHOG_SESSION_HEADER.encode()
_POSTHOG_DISTINCT = POSTHOG_DISTINCT_HEADER.encode()
_MAX_FORWARDED_ELEMENT = 512  # for=...;by=...;host=...;proto=...
_ENVIRON_CHAINS = (("HTTP_X_FORWARDED_FOR", MAX_HOP_CHARS), ("HTTP_FORWARDED", _MAX_FORWARDED_ELEMENT))
_LOCALE = re.compile(r"^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*$")


class RequestFacts(NamedTuple):
    """Headers and peer of one request, decoded and capped (a tuple: made once per request)."""

    peer: Optional[str]
    user_agent: Optional[str]
    referrer: Optional[str]
    accept_language: Optional[str]
    x_forwarded_for: Optional[str]
    forwarded: Optional[str]
    host: Optional[str]
    privacy_signal: bool
    session_id: Optional[str]
    posthog_distinct_id: Optional[str] = None

    @property
    def locale(self) -> Optional[str]:
        """The first ``Accept-Language`` tag (``fr-CH`` from ``fr-CH, fr;q=0.9``), else None."""
        if not self.accept_language:
            return None
        tag = self.accept_language.split(",", 1)[0].split(";", 1)[0].strip()
        return tag if tag != "*" and _LOCALE.match(tag) else None


def read_facts(scope: MutableMapping[str, Any], session_header: str) -> RequestFacts:
    """Collect the facts from ``scope`` (ASGI header names are lower-case bytes)."""
    raw_headers = scope.get("headers") or ()
    headers: dict[bytes, bytes] = dict(raw_headers)
    forwarded_chains = {}
    for name, element_limit in ((b"x-forwarded-for", MAX_HOP_CHARS), (b"forwarded", _MAX_FORWARDED_ELEMENT)):
        if name in headers:
            # Several headers of one name form one comma-separated list, in order.
            values = [value for key, value in raw_headers if key == name]
            forwarded_chains[name] = _rightmost_chain(values, element_limit)
    client = scope.get("client")
    peer = None
    if client:
        try:
            peer = str(client[0])
        except (TypeError, IndexError):
            peer = None
    session = distinct = None
    if session_header:  # no session header: neither of PostHog's is read either
        session = headers.get(session_header.encode("latin-1")) or headers.get(_POSTHOG_SESSION)
        distinct = headers.get(_POSTHOG_DISTINCT)
    return RequestFacts(
        peer=peer,
        user_agent=_short(headers.get(b"user-agent"), 512),
        referrer=_short(headers.get(b"referer"), _MAX_HEADER_CHARS),
        accept_language=_short(headers.get(b"accept-language"), _MAX_SHORT),
        x_forwarded_for=forwarded_chains.get(b"x-forwarded-for"),
        forwarded=forwarded_chains.get(b"forwarded"),
        host=_short(headers.get(b"host"), _MAX_SHORT),
        privacy_signal=headers.get(b"sec-gpc", b"").strip() == b"1"
        or headers.get(b"dnt", b"").strip() == b"1",
        session_id=_short(session, _MAX_SESSION),
        posthog_distinct_id=_short(distinct, _MAX_DISTINCT_ID),
    )


def read_environ_facts(environ: MutableMapping[str, Any], session_header: str) -> RequestFacts:
    """Collect the facts from a WSGI ``environ`` (``HTTP_*`` keys; one header's repeats are
    already joined by the server with commas, as PEP 3333 allows)."""
    get = environ.get
    forwarded_chains = {}
    for key, element_limit in (
        ("HTTP_X_FORWARDED_FOR", MAX_HOP_CHARS),
        ("HTTP_FORWARDED", _MAX_FORWARDED_ELEMENT),
    ):
        value = get(key)
        if value:
            forwarded_chains[key] = _rightmost_chain([_latin1(value)], element_limit)
    peer = get("REMOTE_ADDR") or None
    session = distinct = None
    if session_header:
        session = get("HTTP_" + session_header.upper().replace("-", "_")) or get("HTTP_X_POSTHOG_SESSION_ID")
        distinct = get("HTTP_X_POSTHOG_DISTINCT_ID")
    return RequestFacts(
        peer=peer if isinstance(peer, str) else None,
        user_agent=_short_text(get("HTTP_USER_AGENT"), 512),
        referrer=_short_text(get("HTTP_REFERER"), _MAX_HEADER_CHARS),
        accept_language=_short_text(get("HTTP_ACCEPT_LANGUAGE"), _MAX_SHORT),
        x_forwarded_for=forwarded_chains.get("HTTP_X_FORWARDED_FOR"),
        forwarded=forwarded_chains.get("HTTP_FORWARDED"),
        host=_short_text(get("HTTP_HOST"), _MAX_SHORT),
        privacy_signal=str(get("HTTP_SEC_GPC", "")).strip() == "1" or str(get("HTTP_DNT", "")).strip() == "1",
        session_id=_short_text(session, _MAX_SESSION),
        posthog_distinct_id=_short_text(distinct, _MAX_DISTINCT_ID),
    )


def _latin1(value: Any) -> bytes:
    """A WSGI "native string" (latin-1 by PEP 3333) back to its bytes; anything odd, replaced."""
    if isinstance(value, bytes):
        return value
    return str(value).encode("latin-1", "replace")


def _short_text(value: Any, limit: int) -> Optional[str]:
    if type(value) is not str:
        return None if value is None else _short(_latin1(value), limit)
    text = value[:limit].strip()
    return text if text and text.isprintable() else None


def _rightmost_chain(values: list[bytes], element_limit: int) -> str:
    """The last ``MAX_HOPS`` elements of the joined values; an oversized element becomes empty.

    An empty element parses as no address, so the right-to-left walk stops there instead of
    reading a hop the client wrote as if a proxy had.
    """
    joined = values[0] if len(values) == 1 else b",".join(values)
    elements = joined.rsplit(b",", MAX_HOPS)[-MAX_HOPS:]
    return ",".join("" if len(element) > element_limit else element.decode("latin-1") for element in elements)


def _short(raw: Optional[bytes], limit: int) -> Optional[str]:
    if raw is None:
        return None
    value = raw[:limit].decode("latin-1").strip()
    if not value or not value.isprintable():
        return None
    return value
