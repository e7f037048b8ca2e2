"""A span's ``record_exception`` and ``set_status``, with the text they export under the policy.

Whoever records an exception on a request's spans (our middleware, the ASGI middleware,
FastAPI's own tracing, the app) calls one of these two methods of the span; installed on
the span instance, a ``SpanGuard`` makes the exception's message and stack trace, and a
status description built from it (``"ValueError: <message>"``), go through
``exception_text`` first. The guard refers to its span weakly (see ``exceptions.py``).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Callable, Optional

from opentelemetry.sdk.trace import Span as _SDKSpan
from opentelemetry.trace import Status

from .._errors import report_internal_error
from .current import REQUEST
from .exception_text import ExceptionText, exception_text
from .identity import UserInfo
from .user_tags import refresh_user

if TYPE_CHECKING:
    from ..config import Config


_SDK_RECORD_EXCEPTION = _SDKSpan.record_exception


class SpanGuard:
    """Records exceptions and statuses on one span with their text under ``config``'s policy.

    Usage: ``SpanGuard(span, config, request=ledger).install()``; ``request`` is the request's
    own guard, whose ``user`` (as found so far) names the values to rewrite.
    """

    __slots__ = (
        "__weakref__",
        "_function",
        "_replaced",
        "_request",
        "_span",
        "_status_function",
        "_status_replaced",
        "config",
        "user",
    )

    def __init__(self, span: Any, config: Config, request: Optional[SpanGuard] = None) -> None:
        self._span = weakref.ref(span)
        self.config = config
        self.user: Optional[UserInfo] = None  # the request's user as found, for its values' policy form
        self._request = None if request is None else weakref.ref(request)
        method = span.record_exception
        # The class's function, called with the span: a bound method would hold the span.
        self._function: Optional[Callable[..., None]] = getattr(method, "__func__", None)
        # Unless someone already replaced it on the instance: then keep theirs as it is.
        self._replaced: Optional[Callable[..., None]] = None if self._function else method
        setter = span.set_status
        self._status_function: Optional[Callable[..., None]] = getattr(setter, "__func__", None)
        self._status_replaced: Optional[Callable[..., None]] = None if self._status_function else setter

    def install(self) -> None:
        """Become the span's ``record_exception`` and ``set_status`` (spans that refuse new
        attributes keep theirs, and a span that records nothing needs no guard)."""
        span = self._span()
        if span is None or not span.is_recording():
            return
        try:
            span.record_exception = self
            span.set_status = self.set_status
        except (AttributeError, TypeError):
            return

    def uninstall(self) -> None:
        """Give the span its own methods back, once nothing can report to it any more (it ended)."""
        span = self._span()
        # An instance attribute wins over the class's method: this is ours only while installed.
        if span is None or getattr(span, "record_exception", None) is not self:
            return
        if self._replaced is not None:
            span.record_exception = self._replaced
        else:
            del span.record_exception
        if self._status_replaced is not None:
            span.set_status = self._status_replaced
        elif "set_status" in getattr(span, "__dict__", ()):
            del span.set_status

    def __call__(
        self,
        exception: BaseException,
        attributes: Any = None,
        timestamp: Optional[int] = None,
        escaped: bool = False,
    ) -> None:
        self.record_once(exception, escaped=escaped)

    def record_once(self, exc: BaseException, *, escaped: bool) -> None:
        """Add an ``exception`` event for ``exc`` (the request's ledger adds one per exception)."""
        self._write(exc, escaped, None)

    def set_status(self, status: Any, description: Optional[str] = None) -> None:
        """The span's ``set_status``, with the description under the policy."""
        span = self._span()
        if span is None:
            return
        try:
            if isinstance(status, Status) and status.description:
                status = Status(
                    status.status_code, self._text().description(status.description, self._user())
                )
            elif description:
                description = self._text().description(description, self._user())
        except Exception as exc:
            status, description = Status(getattr(status, "status_code", status)), None
            report_internal_error("status_description", exc)
        if self._status_function is not None:
            self._status_function(span, status, description)
        elif self._status_replaced is not None:
            self._status_replaced(status, description)

    def _write(self, exc: BaseException, escaped: bool, timestamp: Optional[int]) -> None:
        span = self._span()
        if span is None or not span.is_recording():
            return
        try:
            attributes = self._text().attributes(exc, escaped=escaped, user=self._user())
        except Exception as error:
            # Never the raw text: the event keeps the exception's type and loses message and trace.
            attributes = {
                "exception.type": type(exc).__qualname__,
                "exception.message": "",
                "exception.stacktrace": "",
                "exception.escaped": str(escaped),
            }
            report_internal_error("exception_text", error)
        if self._function is _SDK_RECORD_EXCEPTION:
            # What the SDK's record_exception does with these attributes, without formatting
            # the traceback a second time.
            span.add_event(name="exception", attributes=attributes, timestamp=timestamp)
        elif self._function is not None:
            # The given attributes replace the span's own (the raw message and stack trace).
            self._function(span, exc, attributes=attributes, timestamp=timestamp, escaped=escaped)
        elif self._replaced is not None:
            self._replaced(exc, attributes=attributes, timestamp=timestamp, escaped=escaped)

    def _user(self) -> Optional[UserInfo]:
        """The request's user as found so far; in the request itself, found once more first
        (an exception that escapes before the response began may precede the usual look)."""
        owner = self._request() if self._request is not None else self
        if owner is None:
            return self.user
        state = REQUEST.get()
        if state is not None and not state.retired and state.exceptions is owner:
            refresh_user(state)
        return owner.user

    def _text(self) -> ExceptionText:
        return exception_text(self.config)
