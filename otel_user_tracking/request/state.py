"""Per-request state carried in a contextvar.

A contextvar (not a global) holds the request's server span and user, so under any
concurrency each request sees only its own user, and ``set_user()`` reaches the server span
even when called under a child span.

Copies of the request's context outlive it: every task the handler starts and every loop
callback scheduled during the request keeps the value of this contextvar (uvicorn's
keep-alive timer, made while the last body message is sent, waits in the loop's timer heap
for a hundred requests; the middleware sends that message outside the request's context when
the span is its own, but not when another layer made it). So when the request is over its
state is retired: it lets go of the span, the scope, the user objects and the exception
ledger, and keeps only what a late child span still needs (the user id). Otherwise each
request would keep a dozen objects alive long enough for the garbage collector to move them
to its older generations, which makes the young collections more frequent and the full
collections, the longest pauses of the event loop, come sooner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from opentelemetry.trace import Span

from ..pinned_config import pin_config
from .current import REQUEST
from .exceptions import ExceptionLedger
from .identity import UserInfo
from .starlette_routes import scope_before_routing

if TYPE_CHECKING:
    from ..config import Config


class RequestState:
    """What the middleware knows about the request in flight.

    A plain slotted class: one is made per request, and a dataclass with list factories
    costs several times more to create.
    """

    __slots__ = (
        "applied_user",
        "before_routing",
        "config",
        "created",
        "exceptions",
        "explicit_user",
        "finished",
        "found_route",
        "found_user",
        "handled_exception",
        "response_headers",
        "retired",
        "route",
        "scope",
        "span",
        "status_code",
        "status_setter",
        "user_id",
        "user_source",
    )

    def __init__(
        self,
        span: Span,
        scope: Any,
        config: Config,
        *,
        created: bool = False,
        status_setter: Optional[Callable[[Span, int], None]] = None,
    ) -> None:
        self.span = span
        self.scope = scope
        self.before_routing = scope_before_routing(scope)  # to find the route again if needed
        self.config = config
        self.created = created  # the span is ours to name and to give its status
        self.status_setter = status_setter  # sets the HTTP status on a span we made
        self.explicit_user: Optional[UserInfo] = None  # from set_user(): wins over the rest
        self.applied_user: Optional[UserInfo] = None
        self.user_source: Any = None  # the scope's user object that gave applied_user
        self.user_id: Optional[str] = None  # policy-processed, copied onto child spans
        self.status_code: Optional[int] = None
        self.response_headers: Any = None  # the response start's headers: the metrics' response size
        self.finished = False
        self.retired = False  # the request is over (``retire``): only user_id and config remain
        self.route: Optional[str] = None  # the route template, once finish_request found it
        self.found_route: Optional[str] = None  # reported by a framework adapter (``framework.py``)
        self.found_user: Any = None  # the user object a framework adapter reported
        self.handled_exception: Optional[BaseException] = None  # one the framework rendered itself
        self.exceptions = ExceptionLedger(span, config)
        self.exceptions.install()
        pin_config(span, config)

    def retire(self) -> None:
        """The request is over: drop everything but ``user_id`` and ``config`` (see the module
        docstring). ``current_request()`` no longer returns this state, so nothing reads
        the dropped fields again; child spans a late task starts still get the user id."""
        self.retired = True
        del self.span, self.scope, self.before_routing, self.exceptions, self.status_setter
        self.explicit_user = self.applied_user = self.user_source = self.found_user = None
        self.handled_exception = self.response_headers = None


def current_request() -> Optional[RequestState]:
    """The state of the request in flight in this context, or None outside a request."""
    state = REQUEST.get()
    return None if state is None or state.retired else state
