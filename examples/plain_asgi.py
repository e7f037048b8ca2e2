"""A bare ASGI app wrapped by hand: the recipe for Django's ``asgi.py``, Litestar and Quart.

No framework, no ``opentelemetry-instrument``: the SDK is set up here in code, the tag policy
is a ``TagPolicy`` in code, and ``UserTrackingMiddleware`` wraps the ASGI callable::

    uvicorn examples.plain_asgi:application            # spans to the console
    OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 uvicorn examples.plain_asgi:application

For Django, the last lines become
``application = out.UserTrackingMiddleware(get_asgi_application(), tracer_provider=provider,
tag_policy=POLICY)`` in ``asgi.py``, with ``out.set_user(...)`` in your login middleware or a
``user_resolver``; for Litestar and Quart, wrap their app object the same way.
"""

from __future__ import annotations

import json
import os
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

import otel_user_tracking as out

POLICY = out.TagPolicy(id="keep", name="keep", email="mask", roles=True, ip="anonymize")
USERS = {"token-ann": {"id": "u-1", "name": "Ann Lee", "email": "ann@example.com", "roles": ["editor"]}}


def tracer_provider() -> TracerProvider:
    """The SDK in code: OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set, else the console."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "plain-asgi")})
    )
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    store = os.environ.get("PLAIN_ASGI_STORE", "otel-user-tracking.db")
    provider.add_span_processor(out.AnalyticsSpanProcessor(sinks=[out.sinks.SQLiteSink(store)]))
    return provider


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The application: ``/`` for anyone, ``/me`` and ``/boom`` for a bearer token's user."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    headers = dict(scope["headers"])
    user = USERS.get(headers.get(b"authorization", b"").decode().removeprefix("Bearer "))
    if user is not None:
        out.set_user(**user)  # what a login middleware does
    if scope["path"] == "/boom" and user is not None:
        raise RuntimeError("upstream unavailable")
    if scope["path"] == "/me" and user is None:
        status, body = 401, {"error": "login required"}
    else:
        status, body = 200, {"path": scope["path"], "user": user and user["id"]}
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


application = out.UserTrackingMiddleware(app, tracer_provider=tracer_provider(), tag_policy=POLICY)
