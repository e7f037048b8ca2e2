"""The app ``bench_socket.py`` serves, one variant per process (``BENCH_VARIANT``).

A trivial Starlette page behind a middleware that logs a user in (``scope["user"]``, as
Starlette's ``AuthenticationMiddleware`` would), an SDK ``TracerProvider`` with a
``BatchSpanProcessor`` to an exporter that only counts, and per variant:

* ``otel-defaults``: the contrib ``OpenTelemetryMiddleware`` as it comes (3 spans a request);
* ``otel-1span``: the same with ``exclude_spans=["receive", "send"]`` (1 span);
* ``ours-no-analytics``: ``UserTrackingMiddleware``, no analytics processor;
* ``ours-default``: ``UserTrackingMiddleware`` and ``AnalyticsSpanProcessor`` to the SQLite store
  at ``BENCH_DB`` (what ``opentelemetry-instrument`` sets up by default);
* ``peer``: the 1-span middleware, three user attributes set by hand, and the official
  ``posthog`` client's ``capture()`` per request to ``BENCH_POSTHOG`` (a loopback server).

At lifespan shutdown everything is flushed and the counts are written to ``BENCH_STATS`` so
the benchmark can check that each variant did its work.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import otel_user_tracking as out
from otel_user_tracking.env import delivery_from_env

VARIANT = os.environ["BENCH_VARIANT"]


class CountingExporter(SpanExporter):
    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


class User:
    identity = "user-42"
    display_name = "Jane"
    email = "jane@example.com"
    is_authenticated = True


class LoggedIn:
    """Puts the user in the scope, as Starlette's AuthenticationMiddleware does."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope["user"] = User()
        await self.app(scope, receive, send)


exporter = CountingExporter()
provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(exporter))
analytics = None
posthog_client: Any = None


class NullSink:
    """For profiling only (``BENCH_SINK=null``): the analytics path without the store."""

    name = "null"
    max_batch_size = 1000

    def send(self, batch: Sequence[Any]) -> None:
        return None

    def close(self) -> None:
        return None


if VARIANT == "ours-default":
    null = os.environ.get("BENCH_SINK") == "null"
    sink: Any = NullSink() if null else out.sinks.SQLiteSink(os.environ["BENCH_DB"])
    chosen = [] if os.environ.get("BENCH_SINK") == "none" else [sink]
    analytics = out.AnalyticsSpanProcessor(sinks=chosen, settings=delivery_from_env())
    provider.add_span_processor(analytics)
if VARIANT == "peer":
    from posthog import Posthog

    posthog_client = Posthog("phc_bench", host=os.environ["BENCH_POSTHOG"], sync_mode=False)


async def page(request: Request) -> PlainTextResponse:
    if VARIANT == "peer":
        user = request.scope["user"]
        span = trace.get_current_span()
        span.set_attributes(
            {"user.id": user.identity, "user.name": user.display_name, "user.email": user.email}
        )
        posthog_client.capture(
            "$pageview", distinct_id=user.identity, properties={"$current_url": str(request.url)}
        )
    return PlainTextResponse("ok")


_at_shutdown: list[Any] = []  # profiling aids' reports


async def shutdown() -> None:
    for report in _at_shutdown:
        report()
    stats: dict[str, Any] = {}
    if analytics is not None:
        analytics.force_flush(30_000)
        stats["analytics"] = {name: s.__dict__ for name, s in analytics.stats().items()}
    if posthog_client is not None:
        posthog_client.flush()
        posthog_client.shutdown()
    provider.force_flush(30_000)
    stats["spans"] = exporter.count
    with open(os.environ["BENCH_STATS"], "w", encoding="utf-8") as file:
        json.dump(stats, file)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    await shutdown()


inner = Starlette(routes=[Route("/users/{id}", page)], lifespan=lifespan)
if VARIANT == "otel-defaults":
    traced: Any = OpenTelemetryMiddleware(inner, tracer_provider=provider)
elif VARIANT in ("otel-1span", "peer"):
    traced = OpenTelemetryMiddleware(inner, tracer_provider=provider, exclude_spans=["receive", "send"])
else:
    traced = out.UserTrackingMiddleware(inner, tracer_provider=provider)


class Lifespan:
    """Lifespan events reach the Starlette app whatever wraps it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await inner(scope, receive, send)
        else:
            await self.app(scope, receive, send)


app = Lifespan(LoggedIn(traced))

if os.environ.get("BENCH_GC_LOG"):  # profiling aid: how long the collector pauses the server
    _gc_started: list[tuple[float, float]] = []
    _gc_pauses: list[tuple[int, float, float]] = []
    _gc_collected = [0, 0, 0]

    def _gc_timer(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            _gc_started.append((time.perf_counter(), time.thread_time()))
        elif _gc_started:
            wall, cpu = _gc_started.pop()
            _gc_pauses.append((info["generation"], time.perf_counter() - wall, time.thread_time() - cpu))
            _gc_collected[info["generation"]] += info["collected"]

    gc.callbacks.append(_gc_timer)

    def _report_gc() -> None:
        print(f"gc tracked objects: {len(gc.get_objects())}", file=sys.stderr)
        for generation in (0, 1, 2):
            pauses = sorted(p for g, p, _ in _gc_pauses if g == generation)
            cpu = sorted(c for g, _, c in _gc_pauses if g == generation)
            if pauses:
                print(
                    f"gc gen{generation}: {len(pauses)} pauses, "
                    f"median {pauses[len(pauses) // 2] * 1000:.2f} ms, "
                    f"max {pauses[-1] * 1000:.2f} ms, over 1 ms {sum(p > 0.001 for p in pauses)}, "
                    f"total {sum(pauses) * 1000:.1f} ms (CPU median {cpu[len(cpu) // 2] * 1000:.2f}, "
                    f"total {sum(cpu) * 1000:.1f}), collected {_gc_collected[generation]}",
                    file=sys.stderr,
                    flush=True,
                )

    _at_shutdown.append(_report_gc)

if os.environ.get("BENCH_GC_TYPES"):  # profiling aid: what the youngest generation holds at collections
    _young: collections.Counter[str] = collections.Counter()
    _samples = [0, 0]

    def _gc_types(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and info["generation"] == 0:
            _samples[0] += 1
            if _samples[0] % 20 == 0:
                _samples[1] += 1
                _young.update(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects(0))

    gc.callbacks.append(_gc_types)

    def _report_types() -> None:
        print(f"young generation at {_samples[1]} sampled collections:", file=sys.stderr)
        for name, count in _young.most_common(25):
            print(f"  {count / max(_samples[1], 1):7.1f} {name}", file=sys.stderr, flush=True)

    _at_shutdown.append(_report_types)

if os.environ.get("BENCH_GC_OFF"):  # profiling aid: the tail without the collector's pauses
    gc.disable()
