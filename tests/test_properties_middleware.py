"""Property-based tests of the whole middleware on generated ASGI scopes, users and policies."""

from __future__ import annotations

import re
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_user_tracking as out
from otel_user_tracking._errors import internal_error_counts, reset_internal_error_counts
from otel_user_tracking.testing import internal_errors_raise

from ._asgi import http_scope, serve

pytestmark = pytest.mark.slow

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HASH_KEY = "hash-key-9f2c-for-tests"
MIB = 1024 * 1024
BODY = b"hello"


class Weird:
    """A user field of an arbitrary type, whose str() may raise."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def __str__(self) -> str:
        if self.fail:
            raise RuntimeError("no str for you")
        return "weird"


class RaisingUser:
    """A user object whose every attribute raises."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"{name} is not loaded")


any_value = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30),
    st.binary(max_size=30), st.lists(st.text(max_size=5), max_size=3), st.builds(Weird, st.booleans()),
)  # fmt: skip
last_octet = st.integers(1, 254)
public_v4 = st.builds(lambda a, b: f"198.51.{a}.{b}", st.integers(0, 255), last_octet)
public_v6 = st.builds(lambda a, b: f"2001:db8:{a:x}:{b:x}::7", st.integers(1, 0xFFFF), st.integers(1, 0xFFFF))
addresses = st.one_of(public_v4, public_v6)
header_names = st.one_of(
    st.sampled_from([b"user-agent", b"referer", b"accept-language", b"x-forwarded-for", b"forwarded",
                     b"host", b"x-session-id", b"sec-gpc", b"dnt", b"authorization", b"cookie"]),
    st.binary(max_size=20),
)  # fmt: skip
headers = st.lists(st.tuples(header_names, st.binary(max_size=200)), max_size=10)
odd_clients = st.one_of(
    st.none(), st.just(()), st.tuples(addresses, st.integers(0, 65535)), st.tuples(st.text(max_size=20)),
    st.tuples(st.none(), st.none()), st.lists(st.integers(), max_size=3), st.just("not a tuple"),
)  # fmt: skip


def _bare_app(user: Optional[dict[str, Any]]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if user is not None:
            out.set_user(**user)
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": BODY})

    return app


def _tracing() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _exported_values(exporter: InMemorySpanExporter) -> list[str]:
    found: list[str] = []
    for span in exporter.get_finished_spans():
        found.append(span.name)
        for value in (span.attributes or {}).values():
            items = value if isinstance(value, (tuple, list)) else (value,)
            found.extend(str(item) for item in items)
        for event in span.events:
            found.extend(str(v) for v in (event.attributes or {}).values())
    return found


def _contains_address(values: list[str], address: str) -> bool:
    pattern = re.compile(rf"(?<![0-9a-fA-F.:]){re.escape(address)}(?![0-9a-fA-F])")
    return any(pattern.search(value) for value in values)


@SETTINGS
@given(
    path=st.text(max_size=40), raw_path=st.binary(max_size=40), query=st.binary(max_size=80),
    hdrs=headers, client=odd_clients,
    user=st.one_of(st.none(), st.fixed_dictionaries({"id": any_value, "name": any_value, "email": any_value,
                                                    "roles": any_value})),
)  # fmt: skip
@example(path="/", raw_path=b"/", query=b"", hdrs=[(b"\x80\\", b"")], client=None, user=None)
def test_any_request_gets_the_bare_apps_response(
    path: str, raw_path: bytes, query: bytes, hdrs: list[tuple[bytes, bytes]], client: Any, user: Any
) -> None:
    """Whatever the scope and user fields, nothing raises into the app and the response is unchanged."""
    scope = http_scope(path, raw_path=raw_path, query=query, headers=hdrs, client=client)
    bare = serve(_bare_app(user), scope)
    provider, exporter = _tracing()
    policy = out.TagPolicy(id="hash", email="mask", ip="anonymize", hash_key=HASH_KEY)
    wrapped = out.UserTrackingMiddleware(_bare_app(user), tracer_provider=provider, tag_policy=policy)
    reset_internal_error_counts()
    try:
        with internal_errors_raise(False):  # as in production: what the user object raises is swallowed
            assert serve(wrapped, scope) == bare
    finally:
        provider.shutdown()
    raising_fields = user is not None and any(isinstance(v, Weird) and v.fail for v in user.values())
    assert set(internal_error_counts()) <= ({"set_user"} if raising_fields else set())
    assert len(exporter.get_finished_spans()) == 1


@pytest.mark.parametrize("capture", [False, True])
@pytest.mark.parametrize(
    "hdrs",
    [[(b"\x80\\", b"v")], [(b"traceparent", b"\xff\\")], [(b"x-a", b"\\"), (b"\xc3", b"\x80\\")]],
)
def test_undecodable_header_bytes_still_get_a_span(
    hdrs: list[tuple[bytes, bytes]], capture: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Header bytes the ASGI helpers cannot decode (non-UTF-8 then a backslash) still yield one span."""
    if capture:
        monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", ".*")
    provider, exporter = _tracing()
    wrapped = out.UserTrackingMiddleware(_bare_app({"id": "u1"}), tracer_provider=provider)
    reset_internal_error_counts()
    try:
        sent = serve(wrapped, http_scope(headers=hdrs, client=("198.51.100.7", 1)))
    finally:
        provider.shutdown()
    assert sent[-1]["body"] == BODY
    assert internal_error_counts() == {}
    [span] = exporter.get_finished_spans()
    assert span.attributes["user.id"] == "u1"


def _resolver_returning(user: Any) -> Any:
    return lambda scope: user


@SETTINGS
@given(user=st.one_of(st.builds(RaisingUser), any_value, st.dictionaries(st.text(max_size=8), any_value)))
def test_any_resolved_user_object_is_harmless(user: Any) -> None:
    """A resolver may return anything, even an object whose attributes raise; the app still answers."""
    provider, _ = _tracing()
    wrapped = out.UserTrackingMiddleware(
        _bare_app(None), tracer_provider=provider, user_resolver=_resolver_returning(user)
    )
    try:
        sent = serve(wrapped, http_scope(client=("198.51.100.7", 1)))
    finally:
        provider.shutdown()
    assert sent[-1]["body"] == BODY


@SETTINGS
@given(
    peer=addresses, hops=st.lists(addresses, max_size=4),
    email_local=st.text("abcdefghij", min_size=3, max_size=10),
    ip_mode=st.sampled_from(["drop", "anonymize"]), email_mode=st.sampled_from(["hash", "mask", "drop"]),
    trusted=st.booleans(),
)  # fmt: skip
def test_forbidden_values_are_never_exported(
    peer: str, hops: list[str], email_local: str, ip_mode: str, email_mode: str, trusted: bool
) -> None:
    """No raw address under drop/anonymize and no raw email under hash/mask/drop, anywhere on the span."""
    email = f"{email_local}@example.com"
    provider, exporter = _tracing()
    policy = out.TagPolicy(
        email=email_mode,
        ip=ip_mode,
        hash_key=HASH_KEY,
        trusted_proxies=[peer] if trusted else [],  # type: ignore[arg-type]
    )
    wrapped = out.UserTrackingMiddleware(
        _bare_app({"id": "u1", "email": email}), tracer_provider=provider, tag_policy=policy
    )
    hdrs = (
        [(b"x-forwarded-for", ", ".join(hops).encode()), (b"forwarded", f"for={hops[-1]}".encode())]
        if hops
        else []
    )
    try:
        serve(wrapped, http_scope(query=f"email={email}&next=%2F".encode(), headers=hdrs, client=(peer, 1)))
    finally:
        provider.shutdown()
    values = _exported_values(exporter)
    assert values, "no span"
    assert not any(email in value for value in values)
    assert not any(HASH_KEY in value for value in values)
    for address in {peer, *hops}:
        assert not _contains_address(values, address), address


@SETTINGS
@given(peer=addresses, spoofed=st.lists(addresses, min_size=1, max_size=4))
def test_spoofed_forwarding_headers_from_untrusted_peers_change_nothing(
    peer: str, spoofed: list[str]
) -> None:
    """An untrusted peer's X-Forwarded-For/Forwarded never changes the recorded address."""
    provider, exporter = _tracing()
    policy = out.TagPolicy(ip="keep", trusted_proxies=["10.0.0.0/8"])
    wrapped = out.UserTrackingMiddleware(_bare_app(None), tracer_provider=provider, tag_policy=policy)
    hdrs = [(b"x-forwarded-for", ", ".join(spoofed).encode()), (b"forwarded", f"for={spoofed[0]}".encode())]
    try:
        serve(wrapped, http_scope(headers=hdrs, client=(peer, 1)))
    finally:
        provider.shutdown()
    [span] = exporter.get_finished_spans()
    assert span.attributes["client.address"] == peer


@pytest.mark.parametrize("where", ["user-id", "user-agent", "referer", "session", "query"])
def test_a_mebibyte_value_is_capped_not_copied(where: str) -> None:
    """A 1 MiB user id, header or query yields attributes no longer than their caps."""
    huge = "a" * MIB
    provider, exporter = _tracing()
    user = {"id": huge} if where == "user-id" else {"id": "u1"}
    hdrs = {
        "user-agent": [(b"user-agent", huge.encode())],
        "referer": [(b"referer", b"https://r.example/?" + huge.encode())],
        "session": [(b"x-session-id", huge.encode())],
    }.get(where, [])
    query = huge.encode() if where == "query" else b""
    wrapped = out.UserTrackingMiddleware(_bare_app(user), tracer_provider=provider)
    try:
        serve(wrapped, http_scope(query=query, headers=hdrs, client=("198.51.100.7", 1)))
    finally:
        provider.shutdown()
    [span] = exporter.get_finished_spans()
    ours = {k: v for k, v in (span.attributes or {}).items() if k.startswith(("user", "user_tracking"))}
    assert all(len(str(value)) <= 2048 for value in ours.values()), {k: len(str(v)) for k, v in ours.items()}
