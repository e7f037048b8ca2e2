"""Finding the user of a request: set_user(), a resolver, Starlette's scope["user"], request.state.user.

User objects are the app's, so every read is defensive: a property that raises, an id that
is an int, a UUID or None, a mapping instead of an object. Nothing here raises. A mapping's
keys besides the fields read here, and ``set_user``'s extra keyword arguments, are the user's
extra fields (``UserInfo.extra``); the TagPolicy decides which of them are exported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, NamedTuple, Optional

from .. import _limits
from .._errors import report_internal_error
from ..policy import MAX_EXTRA_FIELDS, MAX_EXTRA_VALUE_CHARS, ExtraValue, extra_name_error

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
_INT64 = (-(2**63), 2**63 - 1)


class UserInfo(NamedTuple):
    """A user as plain strings, before the TagPolicy is applied (a tuple: cheap per request)."""

    id: Optional[str] = None
    name: Optional[str] = None
    email: Optional[str] = None
    roles: tuple[str, ...] = ()
    extra: tuple[tuple[str, ExtraValue], ...] = ()  # (name, value) by name, before the policy

    @property
    def is_empty(self) -> bool:
        return not any(self)

    @classmethod
    def from_values(cls, extra: Any = None, **values: Any) -> UserInfo:
        """From the app's values by field name: text fields trimmed and capped, roles a tuple,
        ``extra`` (a mapping) checked by ``clean_extra``."""
        fields: list[Any] = [clean(values.get(field)) for field, (clean, _) in zip(cls._fields, _READERS)]
        fields.append(clean_extra(extra.items()) if extra else ())
        return cls._make(fields)


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
    fields: list[Any] = [convert(_read(user, names, is_mapping)) for convert, names in _READERS]
    fields.append(_mapping_extra(user) if is_mapping else ())
    info = UserInfo._make(fields)
    return None if info.is_empty else info


def clean_extra(
    items: Iterable[tuple[Any, Any]], *, given: bool = True
) -> tuple[tuple[str, ExtraValue], ...]:
    """The extra fields that can be exported, sorted by name: a bad name or value type is
    dropped (counted as the app's failure when the app ``given`` it as an extra, as ``set_user``'s
    keyword arguments are; a user mapping's other keys are only candidates), text is trimmed and
    cut at ``MAX_EXTRA_VALUE_CHARS``, fields past ``MAX_EXTRA_FIELDS`` are dropped (counted)."""
    kept: dict[str, ExtraValue] = {}
    for name, value in items:
        if value is None:
            continue
        problem = extra_name_error(name)
        clean = None if problem else _extra_value(value)
        if problem or clean is None:
            if given:
                report_internal_error(
                    "user.extra", ValueError("an extra user field was dropped"), user_code=True
                )
            continue
        if len(kept) >= MAX_EXTRA_FIELDS:
            _limits.note_cut("user.extra.count")
            break
        if clean != "":
            kept[name] = clean
    return tuple(sorted(kept.items()))


def _extra_value(value: Any) -> Optional[ExtraValue]:
    """An extra field's value as a span attribute can hold it ("" when blank), or None if it cannot."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value) if _INT64[0] <= value <= _INT64[1] else None
    if isinstance(value, float):
        return float(value) if value == value and abs(value) != float("inf") else None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    text = value.strip()
    if len(text) > MAX_EXTRA_VALUE_CHARS:
        _limits.note_cut("user.extra.value")
        text = text[:MAX_EXTRA_VALUE_CHARS]
    return text


def _mapping_extra(user: Mapping[Any, Any]) -> tuple[tuple[str, ExtraValue], ...]:
    """A user mapping's extra fields: its keys besides those the built-in fields are read from
    (one that cannot be an extra, ``permissions: [...]``, is left out without a count)."""
    try:
        items = [(name, value) for name, value in user.items() if name not in _READ_NAMES]
    except Exception as exc:  # the app's own mapping type
        report_internal_error("user.extra", exc, user_code=True)
        return ()
    return clean_extra(items, given=False) if items else ()


_AUTHENTICATED = ("is_authenticated",)
# (how to clean, where to read) for each UserInfo field but ``extra``, in their order.
_READERS = tuple((_roles if field == "roles" else _text, _READ_AS[field]) for field in UserInfo._fields[:-1])
_READ_NAMES = frozenset(
    {*_AUTHENTICATED, *_STAND_INS.values(), *(name for names in _READ_AS.values() for name in names)}
)


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
