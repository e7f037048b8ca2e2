"""Each request carries only its own user, under concurrency and over WebSockets."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request, WebSocket

import otel_user_tracking as out

from ._apps import client, instrumented, new_tracing

REQUESTS = 250


def test_concurrent_requests_each_carry_their_own_user() -> None:
    """250 interleaved requests with distinct users: every span has exactly its own user."""
    tracing = new_tracing()
    with instrumented(tracing):
        app = FastAPI(telemetry={"tracing": False, "metrics": False, "logs": False})  # type: ignore[call-arg]

        @app.get("/work/{n}")
        async def work(n: int, request: Request) -> dict[str, int]:
            out.set_user(id=f"user-{n}", email=f"u{n}@example.com")
            await asyncio.sleep(0)  # yield so requests interleave between set_user and the end
            await asyncio.sleep(0.001 * (n % 5))
            return {"n": n}

        async def run_all() -> list[int]:
            async with client(app) as c:
                responses = await asyncio.gather(*(c.get(f"/work/{n}") for n in range(REQUESTS)))
            return [response.json()["n"] for response in responses]

        assert asyncio.run(run_all()) == list(range(REQUESTS))
    spans = tracing.server_spans()
    assert len(spans) == REQUESTS
    for span in spans:
        n = span.attributes.get("url.path", span.attributes.get("http.target", "")).rsplit("/", 1)[1]
        assert span.attributes["user.id"] == f"user-{n}"
        assert span.attributes["user.email"] == f"u{n}@example.com"


def test_websocket_gets_one_tagged_server_span() -> None:
    """A WebSocket connection is one SERVER span carrying the user set in the endpoint."""
    tracing = new_tracing()
    with instrumented(tracing):
        app = FastAPI(telemetry={"tracing": False, "metrics": False, "logs": False})  # type: ignore[call-arg]

        @app.websocket("/ws")
        async def ws(websocket: WebSocket) -> None:
            await websocket.accept()
            out.set_user(id="ws-user", roles=["reader"])
            await websocket.send_text(await websocket.receive_text())
            await websocket.close()

        assert asyncio.run(_websocket_echo(app, "ping")) == "ping"
    [span] = tracing.server_spans()
    assert span.attributes["user.id"] == "ws-user"
    assert span.attributes["user_tracking.request_type"] == "websocket"


async def _websocket_echo(app: Any, text: str) -> str:
    """Connect, send one text frame, return the echoed frame, over raw ASGI messages."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for message in ({"type": "websocket.connect"}, {"type": "websocket.receive", "text": text}):
        inbox.put_nowait(message)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if inbox.empty():
            return {"type": "websocket.disconnect", "code": 1000}
        return await inbox.get()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("198.51.100.1", 1),
        "server": ("testserver", 80),
        "subprotocols": [],
    }
    await app(scope, receive, send)
    assert sent[0]["type"] == "websocket.accept"
    return str(next(message["text"] for message in sent if message["type"] == "websocket.send"))
