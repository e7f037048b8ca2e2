"""Per-request overhead: bare Starlette vs plain OpenTelemetryMiddleware vs UserTrackingMiddleware.

Drives each app through raw ASGI calls in one process (no sockets, so only middleware cost is
measured), interleaving rounds and keeping each app's fastest round. "ours" serves the same
anonymous request as the others; "ours+set_user" also logs a user in with ``set_user``.
Overhead is the time above the bare app;
the figure that matters is ours / plain, which later work holds at or below 0.7.

Run: ``python benchmarks/bench_middleware.py [--requests 5000] [--rounds 7]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Sequence
from typing import Any, Callable

from _asgi_drive import drive, http_scope

os.environ.setdefault("OTEL_PYTHON_USER_TRACKING_SINKS", "none")

from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import otel_user_tracking as out


class NullExporter(SpanExporter):
    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def make_app(login: bool) -> Starlette:
    async def page(request: Request) -> PlainTextResponse:
        if login:
            out.set_user(id=42, name="Jane", email="jane@example.com", roles=["admin"])
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/users/{id}", page)])


SCOPE = http_scope(
    b"utm_source=news&token=abc",
    [
        (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0"),
        (b"accept-language", b"fr-CH, fr;q=0.9"),
        (b"referer", b"https://news.example/?id=1"),
    ],
)


async def _drive(app: Callable[..., Any], requests: int) -> float:
    return await drive(app, SCOPE, requests)


def measure(requests: int, rounds: int) -> dict[str, float]:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NullExporter(), max_queue_size=100_000))
    bare = make_app(login=False)
    plain = OpenTelemetryMiddleware(make_app(login=False), tracer_provider=provider)
    policy = out.TagPolicy(email="mask", ip="anonymize")
    ours = out.UserTrackingMiddleware(make_app(login=False), tracer_provider=provider, tag_policy=policy)
    ours_login = out.UserTrackingMiddleware(make_app(login=True), tracer_provider=provider, tag_policy=policy)
    apps = {"bare": bare, "plain": plain, "ours": ours, "ours+set_user": ours_login}
    samples: dict[str, list[float]] = {name: [] for name in apps}

    async def run() -> None:
        for app in apps.values():
            await _drive(app, 200)  # warm up
        for _ in range(rounds):
            for name, app in apps.items():
                samples[name].append(await _drive(app, requests))

    asyncio.run(run())
    provider.shutdown()
    # The fastest round is the one least disturbed by the rest of the machine.
    return {name: min(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    result = measure(args.requests, args.rounds)
    bare = result["bare"]
    print(f"{'app':<15}{'µs/request':>12}{'overhead µs':>14}")
    for name, seconds in result.items():
        print(f"{name:<15}{seconds * 1e6:>12.1f}{(seconds - bare) * 1e6:>14.1f}")
    plain = result["plain"] - bare
    for name in ("ours", "ours+set_user"):
        ratio = (result[name] - bare) / plain
        print(f"overhead ratio {name}/plain OpenTelemetryMiddleware: {ratio:.2f} (target <= 0.70)")


if __name__ == "__main__":
    main()
