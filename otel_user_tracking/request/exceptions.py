"""One ``exception`` event per exception, however many layers report it.

The ASGI middleware, FastAPI's exception middleware, Starlette's OpenTelemetry middleware
and our own middleware each see an escaping exception; on one span that would be several
events for one error. Each request's span gets an ``ExceptionLedger`` as its
``record_exception``, so every report, ours or another layer's, goes through it.

The ledger refers to its span weakly: the span holds the ledger, and a strong reference
back would make every request's span a reference cycle that only the garbage collector
frees, which costs the server long collector pauses under load.
"""

from __future__ import annotations

import time
import weakref
from typing import Any, Callable, Optional


class ExceptionLedger:
    """The exceptions of one request: recorded once each, escaped or handled.

    While the request is ``active``, handled exceptions are held back and recorded when it
    ends, so that one that escapes is recorded once, with ``exception.escaped=true``.
    """

    __slots__ = ("_function", "_replaced", "_span", "active", "handled", "pending", "recorded")

    def __init__(self, span: Any) -> None:
        self._span = weakref.ref(span)
        self.active = True
        self.recorded: list[BaseException] = []
        # exceptions an exception handler answered: never "escaped", whoever reports them later
        self.handled: list[BaseException] = []
        # exceptions seen while active, recorded when the response ends: (exc, timestamp, escaped)
        self.pending: list[tuple[BaseException, int, bool]] = []
        method = span.record_exception
        # The class's function, called with the span: a bound method would hold the span.
        self._function: Optional[Callable[..., None]] = getattr(method, "__func__", None)
        # Unless someone already replaced it on the instance: then keep theirs as it is.
        self._replaced: Optional[Callable[..., None]] = None if self._function else method

    def install(self) -> None:
        """Become the span's ``record_exception`` (spans that refuse new attributes keep theirs)."""
        span = self._span()
        try:
            span.record_exception = self  # type: ignore[union-attr]
        except (AttributeError, TypeError):
            return

    def uninstall(self) -> None:
        """Give the span its own ``record_exception`` back, once nothing can report to it any
        more (it ended): the ledger and its lists then go with the request instead of living
        as long as the span waits in an export queue."""
        span = self._span()
        # An instance attribute wins over the class's method: this is ours only while installed.
        if span is None or getattr(span, "record_exception", None) is not self:
            return
        if self._replaced is not None:
            span.record_exception = self._replaced
        else:
            del span.record_exception

    def __call__(
        self,
        exception: BaseException,
        attributes: Any = None,
        timestamp: Optional[int] = None,
        escaped: bool = False,
    ) -> None:
        self.record_once(exception, escaped=escaped)

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

    def _write(self, exc: BaseException, escaped: bool, timestamp: Optional[int]) -> None:
        span = self._span()
        if span is None or not span.is_recording():
            return
        if self._function is not None:
            self._function(span, exc, timestamp=timestamp, escaped=escaped)
        elif self._replaced is not None:
            self._replaced(exc, timestamp=timestamp, escaped=escaped)
