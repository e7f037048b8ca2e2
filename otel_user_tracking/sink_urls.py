"""Sink URLs (``OTEL_PYTHON_USER_TRACKING_SINKS``): parse, mask, and build the sink they name.

Each sink module exposes ``from_url(parsed: SinkURL) -> Sink``; the registry below maps a
URL scheme to that module so importing one backend never imports the others.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import unquote, urlsplit

from .analytics.sink import Sink

# scheme (without +http/+https) -> (module relative to the package, expected form shown in errors)
SINK_SCHEMES: dict[str, tuple[str, str]] = {
    "sqlite": ("store.sqlite.sink", "sqlite:///path/to/analytics.db"),
    "postgresql": ("store.postgres.sink", "postgresql://user:password@host:5432/database"),
    "postgres": ("store.postgres.sink", "postgresql://user:password@host:5432/database"),
    "jsonl": ("sinks.jsonl", "jsonl:///path/to/events.jsonl"),
    "console": ("sinks.console", "console"),
    "memory": ("sinks.memory", "memory"),
    "webhook": ("sinks.webhook", "webhook+https://host/path"),
    "swetrix": ("sinks.swetrix", "swetrix+https://PROJECT_ID@api.swetrix.com/log"),
    "posthog": ("sinks.posthog", "posthog+https://PROJECT_API_KEY@us.i.posthog.com"),
    "segment": ("sinks.segment", "segment+https://WRITE_KEY@api.segment.io"),
    "otlp": ("sinks.otlp", "otlp"),
}


@dataclass(frozen=True)
class SinkURL:
    """A parsed sink URL. ``credential`` is the URL's user part and never shown."""

    scheme: str
    transport: Optional[str]
    host: str
    path: str
    credential: Optional[str] = field(default=None, repr=False)
    raw: str = field(default="", repr=False)
    query: str = field(default="", repr=False)

    @property
    def masked(self) -> str:
        """The URL with its credential replaced by ``***``: safe for logs and errors."""
        return mask_url(self.raw)

    @property
    def base_url(self) -> str:
        """``transport://host/path?query`` without the credential (for HTTP sinks)."""
        query = f"?{self.query}" if self.query else ""
        return f"{self.transport or 'https'}://{self.host}{self.path}{query}"

    def refuse_query(self) -> None:
        """Backends whose API paths are appended to the URL take no query string."""
        if self.query:
            raise self.error("a query string is not supported for this sink; remove it")

    def keyed(self, missing: str) -> tuple[str, str]:
        """A keyed HTTP sink's credential and credential-free URL (no query string allowed).

        Args:
            missing: What to say when the URL has no credential (where the key goes).
        """
        if not self.credential:
            raise self.error(missing)
        if not self.host:
            raise self.error("no host")
        self.refuse_query()
        return self.credential, self.base_url

    def error(self, problem: str) -> ValueError:
        """A configuration error that shows the expected form, credential masked."""
        form = SINK_SCHEMES.get(self.scheme, ("", "?"))[1]
        return ValueError(f"sink URL {self.masked!r}: {problem}; expected the form {form!r}")


def sink_name(kind: str, url: str) -> str:
    """``kind(host:port)``: how a sink is named in logs and metrics, never with a credential."""
    authority = url.split("://", 1)[-1].split("/", 1)[0].split("?", 1)[0]
    return f"{kind}({authority.rsplit('@', 1)[-1]})"


def _reason(exc: ValueError) -> str:
    """Python's words for a bad URL, without the URL itself (it may hold a credential)."""
    text = str(exc)
    if "Port" in text or "int()" in text or "port" in text:
        return "the port is not a number from 0 to 65535"
    if "IPv6" in text:
        return "the IPv6 host is not in brackets or not valid"
    return "it cannot be parsed"


def mask_url(raw: str) -> str:
    """Replace the user part and the query of a URL with ``***`` (either may hold a credential)."""
    scheme, sep, rest = raw.partition("://")
    if not sep:
        return raw
    if "?" in rest:
        rest = rest.split("?", 1)[0] + "?***"
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    if "@" in authority:
        rest = "***@" + rest.split("@", 1)[1]
    return f"{scheme}://{rest}"


def parse_sink_url(raw: str) -> SinkURL:
    """Split ``scheme[+transport]://[credential@]host/path``; bare ``console``/``otlp`` work too."""
    text = raw.strip()
    query = ""
    if "://" not in text:
        scheme, transport, host, path, credential = text.lower(), None, "", "", None
    else:
        scheme_part = text.split("://", 1)[0].lower()
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            form = SINK_SCHEMES.get(scheme_part.partition("+")[0], ("", "scheme://host/path"))[1]
            raise ValueError(
                f"sink URL {mask_url(text)!r} is malformed ({_reason(exc)}); expected the form {form!r}"
            ) from None
        scheme, _, transport_part = parts.scheme.lower().partition("+")
        transport = transport_part or None
        credential = unquote(parts.username) if parts.username else None
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if port:
            host = f"{host}:{port}"
        path = parts.path
        query = parts.query
    if scheme not in SINK_SCHEMES:
        known = ", ".join(sorted([*SINK_SCHEMES, "none"]))
        raise ValueError(
            f"unknown sink {mask_url(text)!r} in OTEL_PYTHON_USER_TRACKING_SINKS; known sinks: {known}"
        )
    if transport not in (None, "http", "https"):
        raise ValueError(f"sink URL {mask_url(text)!r}: transport must be +http or +https, not +{transport}")
    return SinkURL(scheme, transport, host, path, credential, text, query)


def sink_from_url(raw: str) -> Sink:
    """Build the sink a URL names; raise ``ValueError`` with the expected form if it is malformed."""
    parsed = parse_sink_url(raw)
    module = importlib.import_module(f"otel_user_tracking.{SINK_SCHEMES[parsed.scheme][0]}")
    sink: Sink = module.from_url(parsed)
    return sink


def sinks_from_env(value: Optional[str]) -> list[Sink]:
    """Parse a comma-separated ``OTEL_PYTHON_USER_TRACKING_SINKS`` value; ``none`` means no sinks.

    None (the variable is unset) is the implicit default store, which never stops the start.
    """
    if value is None:
        from .store.default import default_store

        store = default_store()
        return [] if store is None else [store]
    urls = [item.strip() for item in value.split(",") if item.strip()]
    if any(url.lower() == "none" for url in urls):
        return []
    return [sink_from_url(url) for url in urls]
