"""Flushing spans and analytics when the app shuts down.

uvicorn re-raises SIGTERM after its graceful shutdown, so interpreter exit handlers (and
with them ``TracerProvider.shutdown``) never run; the ASGI lifespan shutdown does.
"""

from __future__ import annotations

import asyncio

from opentelemetry import trace

from .._errors import report_internal_error
from ..types import Message, Send

SHUTDOWN_FLUSH_SECONDS = 10.0


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


def flush_everything(timeout_s: float = SHUTDOWN_FLUSH_SECONDS) -> None:
    """Force-flush the global tracer provider and every AnalyticsSpanProcessor."""
    from ..analytics.processor import flush_all_processors

    flush_all_processors(timeout_s)
    provider = trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is not None:
        force_flush(int(timeout_s * 1000))
