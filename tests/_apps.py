"""In-process apps and tracing set-ups shared by the middleware tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import httpx
from fastapi import Depends, FastAPI, HTTPException, Request
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import otel_user_tracking as out
from otel_user_tracking.config import reset_config

from ._sinks import ScriptedSink


@dataclass
class Tracing:
    provider: TracerProvider
    exporter: InMemorySpanExporter

    def spans(self) -> Sequence[ReadableSpan]:
        return self.exporter.get_finished_spans()

    def server_spans(self) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.kind is SpanKind.SERVER]

    def server_span(self, path: str) -> ReadableSpan:
        found = [
            span
            for span in self.server_spans()
            if span.attributes.get("url.path", span.attributes.get("http.target", "")).split("?")[0] == path
        ]
        assert len(found) == 1, (
            f"{len(found)} server spans for {path}: {[s.name for s in self.server_spans()]}"
        )
        return found[0]


def new_tracing() -> Tracing:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider, exporter)


@contextlib.contextmanager
def instrumented(tracing: Tracing, **options: Any) -> Iterator[None]:
    """UserTrackingInstrumentor on ``tracing``'s provider for the duration of the block."""
    instrumentor = out.UserTrackingInstrumentor()
    instrumentor.instrument(tracer_provider=tracing.provider, analytics=False, **options)
    try:
        yield
    finally:
        instrumentor.uninstrument()
        reset_config()


class Analytics:
    """A tracing set-up with the analytics processor feeding a recording sink."""

    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing
        self.sink = ScriptedSink()
        self.processor = out.AnalyticsSpanProcessor(sinks=[self.sink], flush_interval=60)
        tracing.provider.add_span_processor(self.processor)

    def events(self, type_: Optional[str] = None) -> list[out.AnalyticsEvent]:
        assert self.processor.force_flush(10_000)
        return [event for event in self.sink.delivered if type_ is None or event.type == type_]


@contextlib.contextmanager
def instrumented_analytics(**options: Any) -> Iterator[Analytics]:
    """``instrumented`` on a fresh tracing set-up with analytics into a recording sink."""
    setup = Analytics(new_tracing())
    try:
        with instrumented(setup.tracing, **options):
            yield setup
    finally:
        setup.processor.shutdown()


USERS = {
    "tok-jane": {"id": 42, "name": "Jane Roe", "email": "Jane@Example.com", "roles": ["admin"]},
    "tok-bob": {"id": "u-7", "name": "Bob", "email": "bob@example.org", "roles": []},
}


def login(request: Request) -> dict[str, Any]:
    token = request.headers.get("authorization", "").removeprefix("Bearer ")
    user = USERS.get(token)
    if user is None:
        raise HTTPException(401, "login required")
    out.set_user(**user)
    return user


def fastapi_app(tracing: Tracing, *, native: bool = False) -> FastAPI:
    """A FastAPI app with a login dependency; FastAPI's native tracing on ``tracing`` if asked."""
    telemetry: dict[str, Any] = (
        {"tracer_provider": tracing.provider}
        if native
        else {"tracing": False, "metrics": False, "logs": False}
    )
    app = FastAPI(telemetry=telemetry)  # type: ignore[call-arg]
    tracer = tracing.provider.get_tracer("tests")

    @app.get("/me")
    def me(user: dict[str, Any] = Depends(login)) -> dict[str, Any]:
        with tracer.start_as_current_span("load-profile"):
            return {"id": user["id"]}

    @app.get("/users/{user_id}")
    def get_user(user_id: int, user: dict[str, Any] = Depends(login)) -> dict[str, int]:
        return {"user_id": user_id}

    @app.get("/public")
    def public() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/boom")
    def boom(user: dict[str, Any] = Depends(login)) -> None:
        raise RuntimeError("kaboom")

    @app.get("/unavailable")
    def unavailable() -> None:
        raise HTTPException(503, "down for maintenance")

    @app.get("/missing")
    def missing() -> None:
        raise HTTPException(404, "nope")

    @app.get("/handled")
    def handled() -> dict[str, bool]:
        try:
            raise ValueError("recovered")
        except ValueError as exc:
            out.capture_exception(exc)
        return {"ok": True}

    return app


def client(app: Any, peer: str = "203.0.113.9", raise_app_exceptions: bool = False) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions, client=(peer, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def get(
    app: Any, path: str, headers: Optional[dict[str, str]] = None, peer: str = "203.0.113.9"
) -> httpx.Response:
    return get_all(app, [path], headers, peer)[0]


def get_all(
    app: Any, paths: Sequence[str], headers: Optional[dict[str, str]] = None, peer: str = "203.0.113.9"
) -> list[httpx.Response]:
    """GET each path in turn through one in-process client."""

    async def go() -> list[httpx.Response]:
        async with client(app, peer) as c:
            return [await c.get(path, headers=headers) for path in paths]

    return asyncio.run(go())


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def current_span_is_server() -> bool:
    span = trace.get_current_span()
    return getattr(span, "kind", None) is SpanKind.SERVER
