"""Sink URLs (``OTEL_PYTHON_USER_TRACKING_SINKS``): parse, mask, and build the sink they name.

Each sink module exposes ``from_url(parsed: SinkURL) -> Sink``; the registry below maps a
URL scheme to that module so importing one backend never imports the others.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import unquote, urlsplit

from ._base import Sink

# scheme (without +http/+https) -> (module, expected form shown in errors)
SINK_SCHEMES: dict[str, tuple[str, str]] = {
    "sqlite": ("sqlite", "sqlite:///path/to/analytics.db"),
    "jsonl": ("jsonl", "jsonl:///path/to/events.jsonl"),
    "console": ("console", "console"),
    "memory": ("memory", "memory"),
    "webhook": ("webhook", "webhook+https://host/path"),
    "swetrix": ("swetrix", "swetrix+https://PROJECT_ID@api.swetrix.com/log"),
    "posthog": ("posthog", "posthog+https://PROJECT_API_KEY@us.i.posthog.com"),
    "segment": ("segment", "segment+https://WRITE_KEY@api.segment.io"),
    "otlp": ("otlp", "otlp"),
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

    @property
    def masked(self) -> str:
        """The URL with its credential replaced by ``***``: safe for logs and errors."""
        return mask_url(self.raw)

    @property
    def base_url(self) -> str:
        """``transport://host/path`` without the credential (for HTTP sinks)."""
        return f"{self.transport or 'https'}://{self.host}{self.path}"

    def error(self, problem: str) -> ValueError:
        """A configuration error that shows the expected form, credential masked."""
        form = SINK_SCHEMES.get(self.scheme, ("", "?"))[1]
        return ValueError(f"sink URL {self.masked!r}: {problem}; expected the form {form!r}")


def mask_url(raw: str) -> str:
    """Replace the user part of a URL with ``***``."""
    scheme, sep, rest = raw.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return raw
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


def parse_sink_url(raw: str) -> SinkURL:
    """Split ``scheme[+transport]://[credential@]host/path``; bare ``console``/``otlp`` work too."""
    text = raw.strip()
    if "://" not in text:
        scheme, transport, host, path, credential = text.lower(), None, "", "", None
    else:
        parts = urlsplit(text)
        scheme, _, transport_part = parts.scheme.lower().partition("+")
        transport = transport_part or None
        credential = unquote(parts.username) if parts.username else None
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        path = parts.path
    if scheme not in SINK_SCHEMES:
        known = ", ".join(sorted([*SINK_SCHEMES, "none"]))
        raise ValueError(
            f"unknown sink {mask_url(text)!r} in OTEL_PYTHON_USER_TRACKING_SINKS; known sinks: {known}"
        )
    if transport not in (None, "http", "https"):
        raise ValueError(f"sink URL {mask_url(text)!r}: transport must be +http or +https, not +{transport}")
    return SinkURL(scheme, transport, host, path, credential, text)


def sink_from_url(raw: str) -> Sink:
    """Build the sink a URL names; raise ``ValueError`` with the expected form if it is malformed."""
    parsed = parse_sink_url(raw)
    module = importlib.import_module(f"{__package__}.{SINK_SCHEMES[parsed.scheme][0]}")
    sink: Sink = module.from_url(parsed)
    return sink


def sinks_from_env(value: str) -> list[Sink]:
    """Parse a comma-separated ``OTEL_PYTHON_USER_TRACKING_SINKS`` value; ``none`` means no sinks."""
    urls = [item.strip() for item in value.split(",") if item.strip()]
    if any(url.lower() == "none" for url in urls):
        return []
    return [sink_from_url(url) for url in urls]
