"""Raw ASGI requests, for tests that need exact scope fields or header bytes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Optional


async def ok_app(scope: Any, receive: Any, send: Any) -> None:
    """The smallest ASGI app: 200 with the body ``ok``."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def http_scope(
    path: str = "/",
    *,
    query: bytes = b"",
    headers: Sequence[tuple[bytes, bytes]] = (),
    client: Any = ("198.51.100.7", 40000),
    server: tuple[str, int] = ("127.0.0.2", 8000),
    raw_path: Optional[bytes] = None,
) -> dict[str, Any]:
    """An HTTP GET scope as a server makes it; ``headers`` are passed through byte for byte."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode() if raw_path is None else raw_path,
        "query_string": query,
        "root_path": "",
        "client": client,
        "server": server,
        "headers": list(headers),
    }


async def drive(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    """Run one bodiless request through ``app``; the messages it sent."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(dict(scope), receive, send)
    return sent


def serve(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    """``drive`` in a fresh event loop."""
    return asyncio.run(drive(app, scope))


def status_and_body(sent: Sequence[dict[str, Any]]) -> tuple[int, bytes]:
    """The response status and the joined body from the messages an app sent."""
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body
