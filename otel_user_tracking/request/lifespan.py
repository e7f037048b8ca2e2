"""Flushing spans and analytics when the app shuts down.

uvicorn re-raises SIGTERM after its graceful shutdown, so interpreter exit handlers (and
with them ``TracerProvider.shutdown``) never run; the ASGI lifespan shutdown does. An app
that refuses the lifespan protocol (Django's ``ASGIHandler`` raises on it) would leave the
flush unrun, so the middleware answers the protocol itself for such an app (``serve_lifespan``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Optional

from opentelemetry import trace

from .._errors import report_internal_error
from ..types import ASGIApp, Message, Receive, Scope, Send

_logger = logging.getLogger(__name__)
DEFAULT_BUDGET_SECONDS = 4.0
_last_deadline: Optional[float] = None  # of the last flush_everything, for the SIGTERM handler


def flush_on_shutdown(send: Send) -> Send:
    """Wrap a lifespan ``send`` so the shutdown completes only after a flush."""

    async def send_and_flush(message: Message) -> None:
        if message.get("type") in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            try:
                await asyncio.get_running_loop().run_in_executor(None, flush_everything)
            except Exception as exc:
                report_internal_error("shutdown_flush", exc)
        await send(message)

    return send_and_flush


async def serve_lifespan(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run the app's lifespan with the flush before shutdown completes; answer it for an app that
    refuses it.

    An app that raises before it has received or sent a single lifespan message does not
    speak the protocol (Django's ``ASGIHandler``): the server would log "unsupported" and
    never run a shutdown, so the startup and the shutdown (after the flush) are answered
    here instead. An app that fails later (its own startup failed) fails as before.
    """
    spoken = False

    async def receive_noted() -> Message:
        nonlocal spoken
        spoken = True
        return await receive()

    flushing_send = flush_on_shutdown(send)

    async def send_noted(message: Message) -> None:
        nonlocal spoken
        spoken = True
        await flushing_send(message)

    try:
        await app(scope, receive_noted, send_noted)
    except Exception:
        if spoken:
            raise
        _logger.debug("the app refuses the ASGI lifespan protocol; answered for it, to flush at shutdown")
        await _answer_lifespan(receive, flushing_send)


async def _answer_lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        kind = message.get("type")
        if kind == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif kind == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def flush_everything(budget: Optional[float] = None) -> None:
    """Flush every AnalyticsSpanProcessor, then the global tracer provider, in one budget.

    The budget (default: the processors' ``shutdown_timeout``, 4 s) covers both, so a hung
    backend cannot make a SIGTERM'd server outlive a container's grace period: the provider
    flushes its own processors, ours among them, again, but only within what is left.
    What is still undelivered then is logged per sink with every counter, since the process
    usually ends right after (uvicorn re-raises SIGTERM) and the counters go with it; where
    it exits normally instead (uvicorn before 0.29), the processors' ``shutdown()`` at
    interpreter exit keeps to the same deadline.
    """
    from ..analytics.processor import live_processors

    processors = live_processors()
    if budget is None:
        budget = max((p.settings.shutdown_timeout for p in processors), default=DEFAULT_BUDGET_SECONDS)
    global _last_deadline
    deadline = _last_deadline = time.monotonic() + budget
    for processor in processors:
        processor.expect_exit(deadline)
    for processor in processors:
        processor.force_flush(_remaining_ms(deadline))
    force_flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if force_flush is not None:
        force_flush(_remaining_ms(deadline))
    for processor in processors:
        for name, stats in processor.stats().items():
            if stats.queued:
                _logger.warning(
                    "analytics sink %s: %d events undelivered at shutdown after %.1f s "
                    "(enqueued %d, sent %d, dropped %d, failed %d)",
                    name, stats.queued, budget, stats.enqueued, stats.sent, stats.dropped, stats.failed,
                )  # fmt: skip


def _remaining_ms(deadline: float) -> int:
    return max(0, int((deadline - time.monotonic()) * 1000))


def flushed_for_exit(grace: float = 2.0) -> bool:
    """Whether ``flush_everything`` ran for this exit already (its deadline not ``grace`` s past)."""
    return _last_deadline is not None and time.monotonic() < _last_deadline + grace
