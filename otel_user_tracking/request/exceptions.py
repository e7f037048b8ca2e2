"""One ``exception`` event per exception, however many layers report it.

The ASGI middleware, FastAPI's exception middleware, Starlette's OpenTelemetry middleware
and our own middleware each see an escaping exception; on one span that would be several
events for one error. Each request's span gets an ``ExceptionLedger`` as its
``record_exception``, so every report, ours or another layer's, goes through it.

The ledger refers to its span weakly: the span holds the ledger, and a strong reference
back would make every request's span a reference cycle that only the garbage collector
frees, which costs the server long collector pauses under load.

The ledger is a ``SpanGuard`` (``span_guard.py``): what it writes, and the status
descriptions set on its span, have their text under the policy, bounded in size.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .span_guard import SpanGuard

if TYPE_CHECKING:
    from ..config import Config


class ExceptionLedger(SpanGuard):
    """The exceptions of one request: recorded once each, escaped or handled.

    While the request is ``active``, handled exceptions are held back and recorded when it
    ends, so that one that escapes is recorded once, with ``exception.escaped=true``.
    """

    __slots__ = ("active", "handled", "pending", "recorded")

    def __init__(self, span: Any, config: Config) -> None:
        super().__init__(span, config)
        self.active = True
        self.recorded: list[BaseException] = []
        # exceptions an exception handler answered: never "escaped", whoever reports them later
        self.handled: list[BaseException] = []
        # exceptions seen while active, recorded when the response ends: (exc, timestamp, escaped)
        self.pending: list[tuple[BaseException, int, bool]] = []

    def record_once(self, exc: BaseException, *, escaped: bool) -> None:
        """Add one ``exception`` event for ``exc``, however many layers report it."""
        if any(seen is exc for seen in self.recorded):
            return
        if escaped and any(seen is exc for seen in self.handled):
            escaped = False
        if self.active:
            for index, (seen, timestamp, was_escaped) in enumerate(self.pending):
                if seen is exc:
                    self.pending[index] = (seen, timestamp, was_escaped or escaped)
                    break
            else:
                self.pending.append((exc, time.time_ns(), escaped))
            if escaped:
                self.flush()
            return
        self.recorded.append(exc)
        self._write(exc, escaped, None)

    def flush(self) -> None:
        """Record the held-back exceptions, in the order they were seen, and stop holding back."""
        self.active = False
        pending, self.pending = self.pending, []
        for exc, timestamp, escaped in pending:
            if any(seen is exc for seen in self.recorded):
                continue
            self.recorded.append(exc)
            self._write(exc, escaped, timestamp)
