"""What `opentelemetry-instrument` checks before it loads the instrumentor."""

from __future__ import annotations

from .frameworks.registry import requirements

_instruments: tuple[str, ...] = ()
_instruments_any = requirements()
