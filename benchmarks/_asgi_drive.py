"""Driving an ASGI app in-process with one fixed request, for the in-process benchmarks."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Callable


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: Any) -> None:
    return None


async def drive(
    app: Callable[..., Any],
    scope: Mapping[str, Any],
    requests: int,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Seconds of ``clock`` per request over ``requests`` calls of ``app`` with copies of ``scope``."""
    start = clock()
    for _ in range(requests):
        await app(dict(scope), receive, send)
    return (clock() - start) / requests
