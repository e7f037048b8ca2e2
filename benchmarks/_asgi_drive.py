"""Driving an ASGI app in-process with one fixed request, for the in-process benchmarks."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository, for tests/_asgi.py
from tests._asgi import http_scope as scope_of


def http_scope(query_string: bytes, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """The benchmarks' request: ``GET /users/7`` from 198.51.100.7 to host ``bench``."""
    return scope_of(
        "/users/7",
        query=query_string,
        headers=[(b"host", b"bench"), *headers],
        client=("198.51.100.7", 50000),
        server=("bench", 80),
    )


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
