"""The ASGI door's lifespan: flushed at shutdown, answered for an app that refuses the protocol."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from otel_user_tracking.request import lifespan
from otel_user_tracking.request.middleware import UserTrackingMiddleware
from otel_user_tracking.types import Message, Receive, Scope, Send

LIFESPAN = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]


def _serve(app: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Run a server's lifespan against the middleware-wrapped ``app``: the messages the server
    got and the flushes, in order."""
    incoming = list(LIFESPAN)
    sent: list[str] = []
    monkeypatch.setattr(lifespan, "flush_everything", lambda budget=None: sent.append("flush"))

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message["type"])

    asyncio.run(UserTrackingMiddleware(app)({"type": "lifespan"}, receive, send))
    return sent


def test_an_app_that_refuses_the_lifespan_gets_it_answered_and_flushed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An app raising on the lifespan scope before speaking it (Django) still gets a shutdown flush."""

    async def django_like(scope: Scope, receive: Receive, send: Send) -> None:
        raise ValueError("Django can only handle ASGI/HTTP connections, not lifespan.")

    assert _serve(django_like, monkeypatch) == [
        "lifespan.startup.complete",
        "flush",
        "lifespan.shutdown.complete",
    ]


def test_an_app_whose_own_startup_fails_still_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """An app that received the startup and then raised is not answered for: its error reaches the server."""

    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        raise RuntimeError("database unreachable")

    with pytest.raises(RuntimeError, match="database unreachable"):
        _serve(failing, monkeypatch)


def test_an_app_that_speaks_the_lifespan_is_flushed_before_its_shutdown_completes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lifespan-speaking app answers for itself; the flush runs before its shutdown.complete."""

    async def starlette_like(scope: Scope, receive: Receive, send: Send) -> None:
        for reply in ("lifespan.startup.complete", "lifespan.shutdown.complete"):
            await receive()
            await send({"type": reply})

    assert _serve(starlette_like, monkeypatch) == [
        "lifespan.startup.complete",
        "flush",
        "lifespan.shutdown.complete",
    ]
