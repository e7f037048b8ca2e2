"""Exception text leaves the process under the TagPolicy: people's values, secrets, size.

An exception's message, stack trace and the status description built from it are the app's
text; they carry whatever the app put in them (SQLAlchemy's ``[parameters: ...]``, a
validation error quoting the email). Each test raises such a text in a real request and
reads what was exported: the span's events and status, and the analytics error event.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from fastapi import Depends
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan

import otel_user_tracking as out
from otel_user_tracking import _limits
from otel_user_tracking.request.exception_text import ExceptionText
from otel_user_tracking.request.identity import UserInfo
from otel_user_tracking.testing import internal_errors_raise

from ._apps import (
    Analytics,
    Tracing,
    bearer,
    fastapi_app,
    get,
    instrumented,
    instrumented_analytics,
    login,
    new_tracing,
)
from ._versions import needs_fastapi_native_tracing

KEY = "exception-text-test-key-2f9d"
EMAIL = "Jane@Example.com"  # tests/_apps.py's tok-jane
PEER = "198.51.100.23"
POLICY = out.TagPolicy(email="hash", name="mask", ip="anonymize", hash_key=KEY)
WORDS = out.Config().scrub_query_keys


def _hmac(value: str) -> str:
    return hmac.new(KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


LEAKY = (
    "(sqlite3.IntegrityError) UNIQUE constraint failed: users.email\n"
    "[SQL: INSERT INTO users (email, password) VALUES (?, ?)]\n"
    "[parameters: ('Jane@Example.com', 'positional-secret')]\n"
    f"login of Jane Roe <jane@example.com> from {PEER} failed: password=hunter2, "
    "retry at https://shop.example/reset?token=tok-abc123&lang=en"
)
RAW = ("jane@example.com", "Jane@Example.com", "Jane Roe", PEER, "hunter2", "positional-secret", "tok-abc123")


def _text() -> ExceptionText:
    return ExceptionText(POLICY, WORDS)


def test_clean_puts_users_emails_addresses_and_secrets_in_policy_form() -> None:
    """Each raw value becomes its policy form; the surrounding text stays as it was."""
    user = UserInfo(id="42", name="Jane Roe", email=EMAIL)
    cleaned = _text().clean(LEAKY, user)
    assert not [raw for raw in RAW if raw.lower() in cleaned.lower()]
    assert _hmac("jane@example.com") in cleaned
    assert "J***" in cleaned and "198.51.100.0" in cleaned
    assert "password=REDACTED" in cleaned and "reset?token=REDACTED&lang=en" in cleaned
    assert "[parameters: REDACTED]" in cleaned
    assert cleaned.startswith("(sqlite3.IntegrityError) UNIQUE constraint failed: users.email\n[SQL: INSERT")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{'password': 'hunter2', 'plan': 'pro'}", "{'password': 'REDACTED', 'plan': 'pro'}"),
        ('{"api_key": "k-1", "n": 1}', '{"api_key": "REDACTED", "n": 1}'),
        ("Authorization: Bearer abc.def", "Authorization: REDACTED"),
        ("client_secret = s3cr3t; x=1", "client_secret = REDACTED; x=1"),
        ("KeyError: 'user'", "KeyError: 'user'"),
        ('File "app.py", line 42, in handler', 'File "app.py", line 42, in handler'),
        ("at 10:30:45 on ::1 and fe80::1%eth0", "at 10:30:45 on :: and fe80::"),
        ("connect to 10.1.2.3:5432 failed", "connect to 10.1.2.0:5432 failed"),
        ("[2001:db8:1:2::7]:443 and ::ffff:198.51.100.7", "[2001:db8:1::]:443 and 198.51.100.0"),
        ("version 1.2.3.4.5 of std::vector", "version 1.2.3.4.5 of std::vector"),
    ],
)
def test_clean_knows_common_secret_shapes_and_leaves_the_rest(text: str, expected: str) -> None:
    """Quoted and header-style pairs are redacted; error names, line numbers and times are not."""
    assert _text().clean(text) == expected


@pytest.mark.parametrize(
    ("mode", "expected"), [("hash", _hmac("42")), ("mask", "4***"), ("drop", "REDACTED"), ("keep", "42")]
)
def test_the_users_own_id_takes_its_policy_form_but_line_numbers_stay(mode: str, expected: str) -> None:
    """The request's user id in a message becomes the id's policy form; "line 42" is left alone."""
    text = ExceptionText(out.TagPolicy(id=mode, hash_key=KEY), WORDS)  # type: ignore[arg-type]
    cleaned = text.clean('no order for user 42\n  File "a.py", line 42', UserInfo(id="42"))
    assert cleaned == f'no order for user {expected}\n  File "a.py", line 42'


def test_huge_message_and_stacktrace_are_cut_with_a_marker_and_counted() -> None:
    """A 5 MB message becomes at most a few KB, a cut token never leaves a fragment, and it is counted."""
    before = _limits.cut_counts()
    message = "x" * 5_000_000 + " jane@example.com"
    text = _text()
    cut = text.message("jane.doe@example.com " * 1000 + message)
    assert len(cut) < _limits.MAX_EXCEPTION_MESSAGE_CHARS + 64 and "characters cut]" in cut
    assert "@example.com" not in cut.replace("***", "")  # hashed; the cut email went whole
    trace_text = text.stacktrace("Traceback (most recent call last):\n" + message)
    assert len(trace_text) < _limits.MAX_EXCEPTION_STACKTRACE_CHARS + 64
    assert trace_text.startswith("Traceback") and _hmac("jane@example.com") in trace_text
    after = _limits.cut_counts()
    assert after.get("exception.message", 0) == before.get("exception.message", 0) + 1
    assert after.get("exception.stacktrace", 0) == before.get("exception.stacktrace", 0) + 1


@pytest.fixture(params=["ours", pytest.param("native", marks=needs_fastapi_native_tracing)])
def setup(request: pytest.FixtureRequest) -> Iterator[tuple[Analytics, bool]]:
    """The span made by our middleware, or by FastAPI's native tracing and enriched by it."""
    with instrumented_analytics(tag_policy=POLICY) as analytics:
        yield analytics, request.param == "native"


def _leaky_app(tracing: Tracing, native: bool) -> Any:
    app = fastapi_app(tracing, native=native)

    @app.get("/signup")
    def signup(user: dict[str, Any] = Depends(login)) -> None:
        raise ValueError(LEAKY)

    @app.get("/reported")
    def reported(user: dict[str, Any] = Depends(login)) -> dict[str, bool]:
        # Another layer reporting through the span's own API.
        trace.get_current_span().record_exception(RuntimeError(LEAKY))
        return {"ok": True}

    @app.get("/huge")
    def huge(user: dict[str, Any] = Depends(login)) -> None:
        raise ValueError("y" * 5_000_000)

    return app


def _exported_text(spans: Sequence[ReadableSpan]) -> str:
    """What the spans say in text: status descriptions and event attributes."""
    parts = []
    for span in spans:
        parts.append(str(span.status.description))
        for event in span.events:
            parts.extend(str(value) for value in (event.attributes or {}).values())
    return "\n".join(parts)


@pytest.mark.parametrize("path", ["/signup", "/reported"])
def test_exception_text_on_the_span_and_the_error_event_follows_the_policy(
    setup: tuple[Analytics, bool], path: str
) -> None:
    """Escaped or reported by another layer, on our span, one we enrich or FastAPI's own child
    span (``fastapi.endpoint``): no raw value is exported, and the error event says so too."""
    analytics, native = setup
    get(_leaky_app(analytics.tracing, native), path, headers=bearer("tok-jane"), peer=PEER)
    exported = _exported_text(analytics.tracing.spans())
    assert "[parameters: REDACTED]" in exported and _hmac("jane@example.com") in exported
    assert not [raw for raw in RAW if raw.lower() in exported.lower()]
    errors = analytics.events("error")
    # FastAPI's tracing records a reported exception on its endpoint span, not the server span.
    assert len(errors) == (0 if native and path == "/reported" else 1)
    stored = "".join(f"{error.error_message}\n{error.error_stacktrace}" for error in errors)
    assert not [raw for raw in RAW if raw.lower() in stored.lower()]
    assert not errors or "password=REDACTED" in stored


def test_a_5mb_exception_message_makes_a_small_span_and_error_event(setup: tuple[Analytics, bool]) -> None:
    """The message and stack trace of a 5 MB exception are cut to a few KB on the span and the event."""
    analytics, native = setup
    get(_leaky_app(analytics.tracing, native), "/huge", headers=bearer("tok-jane"))
    assert len(_exported_text(analytics.tracing.spans())) < 3 * 64 * 1024
    [error] = analytics.events("error")
    assert len(error.error_message or "") < _limits.MAX_EXCEPTION_MESSAGE_CHARS + 64
    assert len(error.error_stacktrace or "") < _limits.MAX_EXCEPTION_STACKTRACE_CHARS + 64


def test_a_failing_text_rule_records_the_exception_without_its_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If cleaning fails, the event keeps its type and loses the raw text, and the request goes on."""
    tracing = new_tracing()

    def broken(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("rule failed")

    monkeypatch.setattr(ExceptionText, "message", broken)
    with instrumented(tracing, tag_policy=POLICY), internal_errors_raise(False):
        assert get(_leaky_app(tracing, False), "/signup", headers=bearer("tok-jane")).status_code == 500
    [event] = [event for event in tracing.server_span("/signup").events if event.name == "exception"]
    assert event.attributes is not None and event.attributes["exception.type"] == "ValueError"
    assert "hunter2" not in _exported_text(tracing.spans())


def test_a_user_from_scope_is_known_to_an_exception_that_escapes_before_the_response() -> None:
    """AuthenticationMiddleware's user, not yet read when the handler raises, still has its id
    in the message replaced by the id's hash."""
    from starlette.applications import Starlette
    from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser
    from starlette.middleware import Middleware
    from starlette.middleware.authentication import AuthenticationMiddleware
    from starlette.requests import HTTPConnection, Request
    from starlette.routing import Route

    class Customer(BaseUser):
        id = "cust-9137"
        email = "mo@example.net"
        is_authenticated = True

    class Backend(AuthenticationBackend):
        async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser]:
            return AuthCredentials(["authenticated"]), Customer()

    async def orders(request: Request) -> None:
        raise LookupError("no orders for cust-9137")

    auth = Middleware(AuthenticationMiddleware, backend=Backend())
    app = Starlette(routes=[Route("/orders", orders)], middleware=[auth])
    tracing = new_tracing()
    with instrumented(tracing, tag_policy=out.TagPolicy(id="hash", hash_key=KEY)):
        assert get(app, "/orders").status_code == 500
    exported = _exported_text(tracing.spans())
    assert f"no orders for {_hmac('cust-9137')}" in exported and "cust-9137" not in exported


@pytest.mark.parametrize("outside", [False, True], ids=["ours", "under-contrib-wsgi"])
def test_a_wsgi_request_exports_its_exception_text_under_the_policy(
    tracer_provider: Any, span_exporter: Any, outside: bool
) -> None:
    """The WSGI door's span, made by it or by contrib's WSGI middleware, gets the same rules."""
    from wsgiref.util import setup_testing_defaults

    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

    def leaky(env: dict[str, Any], start_response: Any) -> list[bytes]:
        out.set_user(id="42", name="Jane Roe", email=EMAIL)
        raise ValueError(LEAKY)

    app: Any = out.UserTrackingWSGIMiddleware(leaky, tracer_provider=tracer_provider, tag_policy=POLICY)
    if outside:
        app = OpenTelemetryMiddleware(app, tracer_provider=tracer_provider)
    env: dict[str, Any] = {"REMOTE_ADDR": PEER, "PATH_INFO": "/signup"}
    setup_testing_defaults(env)
    with pytest.raises(ValueError):
        app(env, lambda *args: None)
    exported = _exported_text(span_exporter.get_finished_spans())
    assert "[parameters: REDACTED]" in exported and _hmac("jane@example.com") in exported
    assert not [raw for raw in RAW if raw.lower() in exported.lower()]
