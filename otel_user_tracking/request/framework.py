"""What a framework adapter tells the request core about the request in flight.

The front doors (ASGI, WSGI) make or enrich the server span from the protocol alone; only
the framework knows the route it matched, the user its auth loaded and the exception it
turned into an error response. An adapter reports each through these calls, from
wherever the framework exposes them (a signal, a wrapped handler, a teardown hook). Each
call finds the request through the contextvar the front door set, does nothing outside a
request, and never raises.
"""

from __future__ import annotations

from typing import Any

from .._errors import report_internal_error
from .state import current_request
from .user_tags import apply_found_user

# ``found_route`` when the framework matched no route: the span is named by the method alone.
UNMATCHED = ""


def report_route(template: str) -> None:
    """The route template the framework matched (``/books/{pk}``): names the span and the page.

    It wins over what the front door could find from the protocol alone.
    """
    state = current_request()
    if state is None or not template:
        return
    state.found_route = template


def report_unmatched() -> None:
    """The framework matched no route (its 404): the span is named by the method alone
    (``GET``), as the HTTP semantic conventions name a request without a route, never by
    its raw path, so scanned URLs do not grow the span names and the store's pages."""
    state = current_request()
    if state is None:
        return
    state.found_route = UNMATCHED


def report_user(user: Any) -> None:
    """A user object (or mapping) the framework's auth has already loaded for this request.

    Read as ``scope["user"]`` is (``id``/``pk``, ``username``, ``email``, ``roles``/
    ``groups``; ``is_authenticated`` false means anonymous). ``set_user()`` and a configured
    ``user_resolver`` win over it. Adapters report only what the app already loaded, so
    reading it costs no query the app did not make.
    """
    state = current_request()
    if state is None or user is None:
        return
    try:
        state.found_user = user
        apply_found_user(state)
    except Exception as exc:
        report_internal_error("report_user", exc)


def report_handled_exception(exc: BaseException) -> None:
    """An exception the framework rendered as a response itself (Django's 500 page, a Flask
    error handler): recorded once, ``escaped=false``, if the response's status reaches
    ``min_status_to_capture``."""
    state = current_request()
    if state is None or not isinstance(exc, Exception):
        return
    try:
        state.exceptions.handled.append(exc)
        state.handled_exception = exc
    except Exception as error:
        report_internal_error("report_handled_exception", error)
