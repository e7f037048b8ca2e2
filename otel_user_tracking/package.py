"""What `opentelemetry-instrument` checks before it loads the instrumentor."""

from __future__ import annotations

_instruments: tuple[str, ...] = ()
_instruments_any = ("starlette >= 0.25", "fastapi >= 0.92")
