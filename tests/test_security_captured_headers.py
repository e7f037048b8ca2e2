"""Captured request and response headers obey the scrubbing and the address policy, whoever made the span."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Response
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

import otel_user_tracking as out

from ._apps import Tracing, get, instrumented, new_tracing

SECRET = "s3cr3t-value"
CLIENT = "198.51.100.23"
PROXY = "10.0.0.5"
CAPTURE_ENV = (
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE",
)
REQUEST_HEADERS = {
    "referer": f"https://shop.example/login?next=%2F&password={SECRET}#access_token={SECRET}",
    "x-original-forwarded-for": f"{CLIENT}, 10.0.0.4",
    "x-real-ip": CLIENT,
    "x-forwarded-for": f"{CLIENT}, 10.0.0.4",
    "x-envoy-external-address": CLIENT,
    "authorization": f"Bearer {SECRET}",
    "cookie": f"theme=dark; sessionid={SECRET}",
    "x-api-key": SECRET,
    "accept": "text/html",
}


def _app() -> FastAPI:
    app = FastAPI(telemetry={"tracing": False, "metrics": False, "logs": False})  # type: ignore[call-arg]

    @app.get("/page")
    def page(response: Response) -> dict[str, bool]:
        response.headers["location"] = f"/next?token={SECRET}"
        response.headers["set-cookie"] = f"sessionid={SECRET}; HttpOnly"
        response.headers["x-served-for"] = CLIENT
        return {"ok": True}

    return app


@pytest.fixture(params=["ours", "contrib-fastapi", "internal-spans"])
def setup(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Tracing, Any]]:
    """Capture every header; the span made by this package or by the contrib FastAPI instrumentation."""
    for name in CAPTURE_ENV:
        monkeypatch.setenv(name, ".*")
    tracing = new_tracing()
    policy = out.TagPolicy(ip="drop", trusted_proxies=["10.0.0.0/8"])
    with instrumented(tracing, tag_policy=policy, internal_spans=request.param == "internal-spans"):
        app = _app()
        if request.param == "contrib-fastapi":
            FastAPIInstrumentor.instrument_app(app, tracer_provider=tracing.provider)
        try:
            yield tracing, app
        finally:
            if request.param == "contrib-fastapi":
                FastAPIInstrumentor.uninstrument_app(app)


def test_captured_headers_carry_no_secret_and_no_address(setup: tuple[Tracing, Any]) -> None:
    """Under ip="drop" no captured header holds a client address, a credential or a sensitive parameter."""
    tracing, app = setup
    assert get(app, "/page", headers=REQUEST_HEADERS, peer=PROXY).status_code == 200
    [span] = tracing.server_spans()
    attributes = dict(span.attributes or {})
    exported = repr(attributes)
    assert SECRET not in exported
    for address in (CLIENT, "10.0.0.4", PROXY):
        assert address not in exported
    assert attributes["http.request.header.accept"] == ("text/html",)
    assert "password=REDACTED" in attributes["http.request.header.referer"][0]
    assert attributes["http.response.header.location"] == ("/next?token=REDACTED",)


def test_our_span_captures_the_configured_headers_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without capture variables nothing is captured; with a list, only the listed headers are."""
    monkeypatch.setenv(CAPTURE_ENV[0], "accept,referer")
    tracing = new_tracing()
    with instrumented(tracing):
        assert get(_app(), "/page", headers=REQUEST_HEADERS).status_code == 200
    [span] = tracing.server_spans()
    captured = sorted(key for key in span.attributes or {} if ".header." in key)
    assert captured == ["http.request.header.accept", "http.request.header.referer"]
