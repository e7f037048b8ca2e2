"""Reading the request facts the policy and the analytics need, once, from the ASGI scope.

Header bytes are decoded as latin-1 (never fails, whatever the client sent) and every value
kept is length-capped, so odd or huge headers cost little and break nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, MutableMapping, Optional

_WANTED = frozenset(
    {
        b"user-agent", b"referer", b"accept-language", b"x-forwarded-for", b"forwarded",
        b"host", b"sec-gpc", b"dnt",
    }
)
_MAX_HEADER_CHARS = 2048
_MAX_SHORT = 256
_LOCALE = re.compile(r"^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*$")


@dataclass(frozen=True)
class RequestFacts:
    """Headers and peer of one request, decoded and capped."""

    peer: Optional[str]
    user_agent: Optional[str]
    referrer: Optional[str]
    accept_language: Optional[str]
    x_forwarded_for: Optional[str]
    forwarded: Optional[str]
    host: Optional[str]
    privacy_signal: bool
    session_id: Optional[str]

    @property
    def locale(self) -> Optional[str]:
        """The first ``Accept-Language`` tag (``fr-CH`` from ``fr-CH, fr;q=0.9``), else None."""
        if not self.accept_language:
            return None
        tag = self.accept_language.split(",", 1)[0].split(";", 1)[0].strip()
        return tag if tag != "*" and _LOCALE.match(tag) else None


def read_facts(scope: MutableMapping[str, Any], session_header: str) -> RequestFacts:
    """Collect the facts from ``scope`` in one pass over its headers."""
    session_key = session_header.encode("latin-1") if session_header else b""
    found: dict[bytes, str] = {}
    for raw_name, raw_value in scope.get("headers") or ():
        name = bytes(raw_name).lower()
        if name not in _WANTED and name != session_key:
            continue
        value = bytes(raw_value)[:_MAX_HEADER_CHARS].decode("latin-1")
        if name in found and name in (b"x-forwarded-for", b"forwarded"):
            found[name] = f"{found[name]},{value}"
        elif name not in found:
            found[name] = value
    client = scope.get("client")
    peer = None
    if client:
        try:
            peer = str(client[0])
        except (TypeError, IndexError):
            peer = None
    session_id = found.get(session_key) if session_key else None
    return RequestFacts(
        peer=peer,
        user_agent=_short(found.get(b"user-agent"), 512),
        referrer=_short(found.get(b"referer"), _MAX_HEADER_CHARS),
        accept_language=_short(found.get(b"accept-language"), _MAX_SHORT),
        x_forwarded_for=found.get(b"x-forwarded-for"),
        forwarded=found.get(b"forwarded"),
        host=_short(found.get(b"host"), _MAX_SHORT),
        privacy_signal=found.get(b"sec-gpc", "").strip() == "1" or found.get(b"dnt", "").strip() == "1",
        session_id=_short(session_id, 128),
    )


def _short(value: Optional[str], limit: int) -> Optional[str]:
    if value is None:
        return None
    value = value.strip()
    if not value or not value.isprintable():
        return None
    return value[:limit]
