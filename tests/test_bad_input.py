"""Bad request data and broken user code never fail a request."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from fastapi import FastAPI, Request

import otel_user_tracking as out
from otel_user_tracking import testing

from ._apps import client, instrumented, new_tracing
from ._asgi import http_scope, serve, status_and_body


class ExplodingUser:
    is_authenticated = True

    @property
    def id(self) -> str:
        raise RuntimeError("database is down")

    @property
    def email(self) -> str:
        raise KeyError("email")

    username = "survivor"


def _app() -> FastAPI:
    app = FastAPI(telemetry={"tracing": False, "metrics": False, "logs": False})  # type: ignore[call-arg]

    @app.get("/echo")
    def echo(request: Request) -> dict[str, Any]:
        return {"ua": request.headers.get("user-agent", "")[:10]}

    @app.get("/exploding-user")
    def exploding(request: Request) -> dict[str, bool]:
        request.state.user = ExplodingUser()
        return {"ok": True}

    return app


def _raw_get(
    app: FastAPI, path: str, headers: list[tuple[bytes, bytes]], query: bytes = b"q=1"
) -> tuple[int, bytes]:
    """Send one request with raw header bytes straight through ASGI."""
    scope = http_scope(
        path, query=query, headers=headers, client=("198.51.100.1", 1), server=("testserver", 80)
    )
    return status_and_body(serve(app, scope))


ODD_HEADERS = {
    "non-utf8": [
        (b"user-agent", b"\xff\xfeMozilla\x80"),
        (b"referer", b"\xc3\x28"),
        (b"accept-language", b"\xff"),
    ],
    "64KiB": [
        (b"user-agent", b"A" * 65536),
        (b"x-forwarded-for", b"1.2.3.4," * 8192),
        (b"cookie", b"c" * 65536),
    ],
    "garbage-forwarding": [(b"forwarded", b'for=;;;,,,for="[zz"'), (b"x-forwarded-for", b",,,%%%")],
    "control-chars": [(b"x-session-id", b"\x00\x01\x02"), (b"accept-language", b"\n\t*;q=x")],
}


@pytest.mark.parametrize("case", sorted(ODD_HEADERS))
def test_odd_headers_are_served_as_without_the_package(case: str) -> None:
    """Non-UTF-8, huge or malformed headers give the same response with and without us."""
    headers = ODD_HEADERS[case]
    baseline = _raw_get(_app(), "/echo", headers)
    tracing = new_tracing()
    with instrumented(tracing, tag_policy=out.TagPolicy(ip="keep", trusted_proxies=["198.51.100.0/24"])):
        instrumented_result = _raw_get(_app(), "/echo", headers)
    assert instrumented_result == baseline
    assert baseline[0] == 200
    assert len(tracing.server_spans()) == 1


def test_non_utf8_query_string_is_served_and_counted() -> None:
    """A non-UTF-8 query (which the ASGI helpers cannot decode) is served as usual and still traced."""
    testing.reset()
    baseline = _raw_get(_app(), "/echo", [], query=b"\xff=\xfe")
    tracing = new_tracing()
    with instrumented(tracing):
        assert _raw_get(_app(), "/echo", [], query=b"\xff=\xfe") == baseline
    assert baseline[0] == 200
    assert "span_start" not in out.internal_error_counts()
    assert len(tracing.server_spans()) == 1


def _get(app: FastAPI, path: str) -> int:
    async def go() -> int:
        async with client(app) as c:
            return (await c.get(path)).status_code

    return asyncio.run(go())


def test_raising_resolver_is_logged_once_counted_and_swallowed(caplog: pytest.LogCaptureFixture) -> None:
    """A user_resolver that raises: every request is served, one log line, every failure counted."""
    testing.reset()

    def resolver(scope: Any) -> None:
        raise RuntimeError("secret-token-in-message")

    tracing = new_tracing()
    with (
        caplog.at_level(logging.WARNING, logger="otel_user_tracking"),
        instrumented(tracing, user_resolver=resolver),
    ):
        app = _app()
        assert [_get(app, "/echo") for _ in range(3)] == [200, 200, 200]
    counts = out.internal_error_counts()
    assert counts["user_resolver"] == 6  # resolved at response start and at the end
    lines = [record.getMessage() for record in caplog.records if "user_resolver" in record.getMessage()]
    assert len(lines) == 1
    assert "secret-token-in-message" not in caplog.text


def test_user_object_whose_properties_raise_still_tags_what_it_can() -> None:
    """Raising properties are skipped (and counted); the other fields still tag the span."""
    testing.reset()
    tracing = new_tracing()
    with instrumented(tracing):
        assert _get(_app(), "/exploding-user") == 200
    [span] = tracing.server_spans()
    assert span.attributes["user.name"] == "survivor"
    assert "user.id" not in span.attributes
    assert out.internal_error_counts()["user.id"] >= 1


def test_broken_instrumentation_internals_do_not_fail_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """Even a bug in our own request-start code leaves the request untouched."""
    import otel_user_tracking.request.lifecycle as lifecycle

    def broken(*args: Any) -> None:
        raise AttributeError("bug")

    monkeypatch.setattr(lifecycle, "read_facts", broken)
    tracing = new_tracing()
    with instrumented(tracing), testing.internal_errors_raise(False):
        assert _get(_app(), "/echo") == 200
    assert out.internal_error_counts()["request_start"] == 1
