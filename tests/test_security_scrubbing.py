"""Sensitive query values are scrubbed as documented, and the scrubber keeps no attacker-sized state."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_user_tracking as out
from otel_user_tracking.config import DEFAULT_SCRUB_QUERY_KEYS
from otel_user_tracking.request.scrubbing import QueryScrubber, is_sensitive_key

from ._asgi import drive, http_scope, ok_app

SECRET = "s3cr3t-value"


def _scope(query: bytes, headers: list[tuple[bytes, bytes]] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    return http_scope("/p", query=query, headers=[(b"host", b"127.0.0.2:8000"), *headers])


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "password1",
        "passwordConfirm",
        "PASSWORD",
        "accessKey",
        "tokenId",
        "emailAddress",
        "apiKeyId",
        "X-API-KEY",
        "reset_token",
        "resettoken",
        "user.password",
        "pass%77ord",
        "client_secret",
        "clientSecret",
        "sessionId",
        "SID",
    ],
)
def test_sensitive_keys_match_on_their_normalised_parts(key: str) -> None:
    """Keys match case-insensitively on parts split at separators, camelCase and digits."""
    scrubber = QueryScrubber(DEFAULT_SCRUB_QUERY_KEYS)
    assert scrubber.query(f"a=1&{key}={SECRET}&b=2") == f"a=1&{key}=REDACTED&b=2"


@pytest.mark.parametrize("key", ["monkey", "compass", "inside", "design", "utm_source", "q", "page", "sort"])
def test_ordinary_keys_are_kept(key: str) -> None:
    """Short scrub words match whole parts only, so ordinary keys keep their values."""
    assert not is_sensitive_key(key, DEFAULT_SCRUB_QUERY_KEYS)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"/p?a=1;password={SECRET}", "/p?a=1;password=REDACTED"),
        (f"/p?a=1;b=2&token={SECRET};c=3", "/p?a=1;b=2&token=REDACTED;c=3"),
        (
            f"https://idp.example/cb#access_token={SECRET}&token_type=bearer",
            "https://idp.example/cb#access_token=REDACTED&token_type=REDACTED",
        ),
        (f"https://x.example/?q=1#code={SECRET}", "https://x.example/?q=1#code=REDACTED"),
        ("https://x.example/#section-2", "https://x.example/#section-2"),
    ],
)
def test_both_separators_and_fragments_are_scrubbed(url: str, expected: str) -> None:
    """``;`` separates parameters as ``&`` does, and a fragment's parameters are scrubbed too."""
    assert QueryScrubber(DEFAULT_SCRUB_QUERY_KEYS).url(url) == expected


def test_span_and_referrer_never_carry_the_secret(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """End to end: http.url/url.query and the referrer attribute hold no sensitive value."""
    query = f"passwordConfirm={SECRET}&apiKeyId={SECRET}&x=1;password={SECRET}".encode()
    referrer = f"https://idp.example/cb?ok=1#access_token={SECRET}".encode()
    app = out.UserTrackingMiddleware(ok_app, tracer_provider=tracer_provider)
    asyncio.run(drive(app, _scope(query, [(b"referer", referrer)])))
    [span] = span_exporter.get_finished_spans()
    exported = repr(dict(span.attributes or {}))
    assert SECRET not in exported
    assert "REDACTED" in exported


class _DroppingProvider(TracerProvider):
    """A provider whose spans go nowhere, so only the middleware itself can hold memory."""


def test_unique_huge_queries_leave_no_memory_behind() -> None:
    """300 requests with unique 60 KB query strings retain well under 3 MB (no per-query cache).

    Before the fix each one kept about 120 KB in the scrubber's caches.
    """
    provider = _DroppingProvider()
    app = out.UserTrackingMiddleware(ok_app, tracer_provider=provider)
    padding = "v" * 60_000

    async def run(first: int, count: int) -> None:
        for n in range(first, first + count):
            await drive(app, _scope(f"n={n}&token=abc&pad={padding}".encode()))

    # Warm-up: fills the standard library's own bounded urlsplit cache (128 URLs, which the
    # OpenTelemetry ASGI helpers fill too) and first-request allocations.
    tracemalloc.start()
    try:
        asyncio.run(run(0, 200))
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        asyncio.run(run(20, 300))
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        provider.shutdown()
    assert retained < 3_000_000, f"{retained} bytes retained"


def test_scrubber_state_stays_within_a_fixed_budget() -> None:
    """However many distinct keys and queries go through, the scrubber's own state stays small."""
    scrubber = QueryScrubber(DEFAULT_SCRUB_QUERY_KEYS)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(20_000):
            scrubber.query(f"k{n}{'x' * 40}=1&other{n}=2")
            scrubber.url(f"/p?{'y' * 2000}{n}=1")
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert retained < 1_000_000, f"{retained} bytes retained"
