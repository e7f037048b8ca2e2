"""The calls a handler makes during a request: ``set_user``, ``track``, ``capture_exception``.

Each finds the request through the contextvar the middleware set, so it reaches the
request's server span even under a child span, and does nothing outside a request. None of
them raises into the handler, except ``track`` for a malformed name or meta (a bug in the
calling code, caught at the call rather than lost); size is never an error, values past a
cap are cut or dropped and counted (``cut_counts()``).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional, Sequence

from .. import attributes as attrs
from .._errors import report_internal_error
from ..analytics.events import new_event_id, validate_event_name, validate_meta
from .identity import UserInfo
from .state import current_request
from .user_tags import apply_user

_logger = logging.getLogger(__name__)


def set_user(
    id: Any = None,
    name: Optional[str] = None,
    email: Optional[str] = None,
    roles: Optional[Sequence[str]] = None,
    **extra: Any,
) -> None:
    """Tag the current request's server span with the user, like ``sentry_sdk.set_user``.

    Usage: ``set_user(id=user.pk, email=user.email, plan="pro", org_id=org.pk)``.

    Call it after login, in a handler or a dependency; it wins over every other way of
    finding the user. The TagPolicy decides what is exported. Text values are cut at 1024
    characters and roles at 64 (counted in ``cut_counts()``). Other keyword arguments are
    extra fields, exported as ``user.<name>`` (and in the analytics events) only in the mode
    the policy names for them (``TagPolicy(extra={"plan": "keep", "org_id": "hash"})``;
    unnamed ones follow ``extra_default``, "drop" unless set). An extra's value is text, a
    bool, an int or a float, cut at 256 characters; a name outside ``[a-z0-9_.]``, another
    type, or fields past the 32nd are dropped and counted, never raised. Outside a request
    it does nothing.
    """
    state = current_request()
    if state is None:
        return
    try:
        state.explicit_user = UserInfo.from_values(id=id, name=name, email=email, roles=roles, extra=extra)
        apply_user(state, state.explicit_user)
    except Exception as exc:  # never raise into the handler
        report_internal_error("set_user", exc)


def capture_exception(exc: BaseException) -> None:
    """Record a handled exception as one ``exception`` event on the request's server span."""
    state = current_request()
    if state is None:
        return
    try:
        state.exceptions.record_once(exc, escaped=False)
    except Exception as error:
        report_internal_error("capture_exception", error)


def track(name: str, meta: Optional[Mapping[str, Any]] = None) -> None:
    """Record a custom analytics event on the request's server span.

    Usage: ``track("CHECKOUT_COMPLETED", meta={"plan": "pro"})``. The event shows in the
    trace as a span event, and the AnalyticsSpanProcessor turns it into a custom event.
    Raises ``ValueError`` at the call for a malformed name or meta: a name is 1-256
    characters with no control characters; meta keys are non-empty strings and values
    str, int, float or bool. Size is never an error: meta keeps at most 100 keys of at most
    128 characters and 32 KiB in all, and strings longer than 4 KiB are cut with a marker;
    what is cut or dropped is counted (``cut_counts()``) and logged once. Outside a request
    the event has nowhere to go: it is logged at debug level and dropped.
    """
    validate_event_name(name)
    clean = validate_meta(meta)
    state = current_request()
    if state is None or not state.span.is_recording():  # no request, or its span ended (BackgroundTasks)
        _logger.debug("track() called outside a request; event dropped")
        return
    try:
        event_attributes: dict[str, Any] = {
            attrs.EVENT_TYPE: "custom",
            attrs.EVENT_ID: new_event_id(),
        }
        for key, value in clean.items():
            event_attributes[attrs.EVENT_META_PREFIX + key] = value
        state.span.add_event(name, event_attributes)
    except Exception as exc:
        report_internal_error("track", exc)
