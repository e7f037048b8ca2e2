"""FastAPI's dependency user against ``set_user`` in the dependency, in-process, in one run.

Three FastAPI apps under ``UserTrackingInstrumentor`` serve the same authenticated request
through raw ASGI calls (no sockets): the login dependency calls ``out.set_user(...)``
("set_user"); it only returns the user and the adapter finds it ("dependency user"); and a
route whose dependency is not a user's, with the adapter's ``solve_dependencies`` wrapper in
place and taken out ("other dependency", "other, unwrapped"). Rounds interleave; each
variant keeps its fastest round, in CPU time of the serving thread, and each ratio is also
given as the median of the rounds' own ratios. Targets: dependency user / set_user <= 1.0 (finding the user
costs no more than telling us), other dependency / other unwrapped <= 1.02 (routes without a
user dependency pay nothing that shows).

Run: ``python benchmarks/bench_fastapi_user.py [--requests 3000] [--rounds 15]``
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import os
import statistics
import time
from collections.abc import Sequence
from typing import Any, Callable

from _asgi_drive import drive, http_scope

os.environ.setdefault("OTEL_PYTHON_USER_TRACKING_SINKS", "none")

import fastapi.routing
from fastapi import Depends, FastAPI, Header
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import otel_user_tracking as out

USER: dict[str, Any] = {"id": 42, "name": "Jane", "email": "jane@example.com", "roles": ["admin"]}


class NullExporter(SpanExporter):
    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def login(authorization: str = Header(default="")) -> dict[str, Any]:
    out.set_user(**USER)
    return USER


async def get_current_user(authorization: str = Header(default="")) -> dict[str, Any]:
    return USER


async def get_settings(authorization: str = Header(default="")) -> dict[str, Any]:
    return {"theme": "dark"}


def make_app(dependency: Callable[..., Any]) -> FastAPI:
    app = FastAPI()

    @app.get("/users/{user_id}")
    async def page(user_id: int, value: dict[str, Any] = Depends(dependency)) -> dict[str, int]:
        return {"user_id": user_id}

    return app


SCOPE = http_scope(b"", [(b"authorization", b"Bearer token"), (b"user-agent", b"Mozilla/5.0")])


# CPU time of this thread: other processes on a shared host and the span exporter's
# thread do not count, so the variants' ratios hold when the machine is busy.
async def _drive(app: Callable[..., Any], requests: int) -> float:
    return await drive(app, SCOPE, requests, time.thread_time)


def measure(requests: int, rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """Each variant's fastest round, and the median over rounds of the two ratios of one round."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NullExporter(), max_queue_size=100_000))
    instrumentor = out.UserTrackingInstrumentor()
    instrumentor.instrument(tracer_provider=provider, analytics=False)
    routing: Any = fastapi.routing
    wrapped = routing.solve_dependencies
    unwrapped = wrapped.__wrapped__
    other = make_app(get_settings)
    apps = {
        "set_user": (make_app(login), wrapped),
        "dependency user": (make_app(get_current_user), wrapped),
        "other dependency": (other, wrapped),
        "other, unwrapped": (other, unwrapped),
    }
    samples: dict[str, list[float]] = {name: [] for name in apps}

    async def run() -> None:
        for app, solver in apps.values():
            routing.solve_dependencies = solver
            await _drive(app, 200)  # warm up
        for _ in range(rounds):
            for name, (app, solver) in apps.items():
                routing.solve_dependencies = solver
                samples[name].append(await _drive(app, requests))
        routing.solve_dependencies = wrapped

    try:
        asyncio.run(run())
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
    fastest = {name: min(values) for name, values in samples.items()}
    ratios = {
        "user": statistics.median(map(operator.truediv, samples["dependency user"], samples["set_user"])),
        "other": statistics.median(
            map(operator.truediv, samples["other dependency"], samples["other, unwrapped"])
        ),
    }
    return fastest, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    result, ratios = measure(args.requests, args.rounds)
    print(f"{'variant':<18}{'CPU µs/request':>15}")
    for name, seconds in result.items():
        print(f"{name:<18}{seconds * 1e6:>15.1f}")
    user = result["dependency user"] / result["set_user"]
    other = result["other dependency"] / result["other, unwrapped"]
    print(
        f"dependency user / set_user in the dependency: {user:.3f} fastest rounds, "
        f"{ratios['user']:.3f} median of rounds (target <= 1.0)"
    )
    print(
        f"other dependency, wrapped / unwrapped: {other:.3f} fastest rounds, "
        f"{ratios['other']:.3f} median of rounds (target <= 1.02)"
    )


if __name__ == "__main__":
    main()
