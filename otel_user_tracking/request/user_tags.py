"""Putting the user on the spans, shaped by the TagPolicy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from opentelemetry import trace

from .. import attributes as attrs
from ..policy import USER_FIELDS
from .identity import UserInfo, resolve_user, user_from_object

if TYPE_CHECKING:
    from .state import RequestState


def user_attributes(user: UserInfo, state: RequestState) -> dict[str, Any]:
    """The ``user.*`` attributes the policy allows for ``user``."""
    policy = state.config.tag_policy
    values: dict[str, Any] = {}
    for field, key in zip(USER_FIELDS, attrs.USER_FIELD_KEYS):
        value = policy.apply(field, getattr(user, field))
        if value is not None:
            values[key] = value
    if policy.roles and user.roles:
        values[attrs.USER_ROLES] = list(user.roles)
    for name, raw in user.extra:
        extra = policy.apply_extra(name, raw)
        if extra is not None:
            values[attrs.USER_PREFIX + name] = extra
    return values


def apply_user(state: RequestState, user: Optional[UserInfo]) -> None:
    """Tag the server span (and the current child span, for ``user.id``) with ``user``."""
    if user is None or user == state.applied_user:
        return
    values = user_attributes(user, state)
    state.applied_user = user
    state.exceptions.user = user  # exception text shows its values in their policy form
    state.user_id = values.get(attrs.USER_ID)
    if state.user_id is not None and state.config.registered_names:
        values[attrs.ENDUSER_ID] = state.user_id
    if state.span.is_recording():
        state.span.set_attributes(values)
    if state.user_id is not None and state.config.child_spans:
        current = trace.get_current_span()
        if current is not state.span and current.is_recording():
            current.set_attribute(attrs.USER_ID, state.user_id)


def refresh_user(state: RequestState) -> None:
    """Resolve the user again (unless ``set_user()`` named one) and tag the span if it changed.

    Runs at response start and at the end, so a login inside the handler is seen; when
    ``scope["user"]`` is still the very object already read (the common case: Starlette's
    ``AuthenticationMiddleware`` sets it once), reading it again is skipped.
    """
    if state.explicit_user is not None:
        return
    if state.found_user is not None and state.config.user_resolver is None:
        apply_found_user(state)
        return
    source = state.scope.get("user")
    if state.config.user_resolver is None and source is not None and source is state.user_source:
        return
    user = resolve_user(state.scope, state.config.user_resolver, state.found_user)
    if user is not None:
        state.user_source = source
    apply_user(state, user)


def apply_found_user(state: RequestState) -> None:
    """Tag the span with the user a framework adapter reported, unless ``set_user()`` or a
    resolver decides; an anonymous or unreadable user leaves the span as it is."""
    if state.explicit_user is not None or state.config.user_resolver is not None:
        return
    source = state.found_user
    if source is state.user_source:
        return
    user = user_from_object(source)
    if user is not None:
        state.user_source = source
    apply_user(state, user)
