"""Finding the user of a request: set_user(), a resolver, Starlette's scope["user"], request.state.user.

User objects are the app's, so every read is defensive: a property that raises, an id that
is an int, a UUID or None, a mapping instead of an object. Nothing here raises.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, NamedTuple, Optional

from .. import _limits
from .._errors import report_internal_error

# Where a user object or mapping may hold each UserInfo field: the first present, non-None wins.
_READ_AS: dict[str, tuple[str, ...]] = {
    "id": ("identity", "id", "user_id", "pk"),
    "name": ("display_name", "username", "name"),
    "email": ("email",),
    "roles": ("roles", "groups"),
}
# A field a base class leaves abstract (raises NotImplementedError) is read from its stand-in:
# Starlette's ``BaseUser.identity``, which its ``SimpleUser`` never implements, by the username.
_STAND_INS = {"identity": "username"}
_MAX_VALUE_LENGTH = 1024
_MAX_ROLES = 64


class UserInfo(NamedTuple):
    """A user as plain strings, before the TagPolicy is applied (a tuple: cheap per request)."""

    id: Optional[str] = None
    name: Optional[str] = None
    email: Optional[str] = None
    roles: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not any(self)

    @classmethod
    def from_values(cls, **values: Any) -> UserInfo:
        """From the app's values by field name: text fields trimmed and capped, roles a tuple."""
        return cls._make(clean(values.get(field)) for field, (clean, _) in zip(cls._fields, _READERS))


def _text(value: Any) -> Optional[str]:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = value if isinstance(value, str) else str(value)
    text = text.strip()
    if len(text) > _MAX_VALUE_LENGTH:
        _limits.note_cut("user.value")
        text = text[:_MAX_VALUE_LENGTH]
    return text or None


def _roles(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)):
        items: Iterable[Any] = [value]
    elif isinstance(value, Iterable):
        items = value
    else:
        return ()
    roles: list[str] = []
    for item in items:
        if len(roles) >= _MAX_ROLES:
            _limits.note_cut("user.roles")
            break
        text = _text(getattr(item, "name", item) if not isinstance(item, str) else item)
        if text:
            roles.append(text)
    return tuple(roles)


def _read(user: Any, names: tuple[str, ...], is_mapping: bool) -> Any:
    """The first present, non-None field among ``names`` on an object or a mapping."""
    stand_in: Optional[str] = None
    for name in names:
        try:
            value = user.get(name) if is_mapping else getattr(user, name, None)
        except NotImplementedError:  # left abstract by a base class: not the app's failure
            stand_in = stand_in or _STAND_INS.get(name)
            continue
        except Exception as exc:  # a property of the app's user object raised
            report_internal_error(f"user.{name}", exc, user_code=True)
            continue
        if callable(value) and not isinstance(value, type):
            continue
        if value is not None:
            return value
    return None if stand_in is None else _read(user, (stand_in,), is_mapping)


def user_from_object(user: Any) -> Optional[UserInfo]:
    """Read id, name, email and roles from a user object or mapping; None when unauthenticated."""
    if user is None:
        return None
    if isinstance(user, UserInfo):
        return user
    if isinstance(user, (str, int)) and not isinstance(user, bool):
        return UserInfo(id=_text(user))
    is_mapping = type(user) is dict or isinstance(user, Mapping)
    if _read(user, _AUTHENTICATED, is_mapping) is False:
        return None
    # Positional and in UserInfo's field order: this runs once per request.
    info = UserInfo._make(convert(_read(user, names, is_mapping)) for convert, names in _READERS)
    return None if info.is_empty else info


_AUTHENTICATED = ("is_authenticated",)
# (how to clean, where to read) for each UserInfo field, in its order.
_READERS = tuple((_roles if field == "roles" else _text, _READ_AS[field]) for field in UserInfo._fields)


def resolve_user(
    scope: MutableMapping[str, Any],
    resolver: Any,
    found: Any = None,
) -> Optional[UserInfo]:
    """The user from the resolver, else the one a framework adapter reported (``found``), else
    ``scope["user"]``, else ``scope["state"]["user"]``.

    ``set_user()`` wins over all of these; the caller checks it first.
    """
    if resolver is not None:
        try:
            resolved = user_from_object(resolver(scope))
        except Exception as exc:
            report_internal_error("user_resolver", exc, user_code=True)
            resolved = None
        if resolved is not None:
            return resolved
    if found is not None:
        return user_from_object(found)
    user = user_from_object(scope.get("user"))
    if user is not None:
        return user
    state = scope.get("state")
    if isinstance(state, Mapping):
        return user_from_object(state.get("user"))
    return None
