"""FastAPI's dependency user: what the app's auth dependency returned is the request's user.

Most FastAPI apps load the user in a dependency (``current_user: User =
Depends(get_current_user)``, ``Annotated[User, Depends(...)]``, ``Security(...)``) and never
put it in the scope. FastAPI keeps every solved dependency's value in the request's
dependency cache, keyed by the dependency's function; this adapter wraps the
``solve_dependencies`` that FastAPI's route handlers call and reports the user dependency's
value (``report_user``) once the route's dependencies are solved.

Which dependency is the user's: ``Config.user_dependency`` (the function, or its
``"module:attribute"`` name, also from ``OTEL_PYTHON_USER_TRACKING_USER_DEPENDENCY``), else
any whose function has one of the ``CONVENTIONAL_NAMES``. Which dependencies of a route
match is worked out once per route; a route without a user dependency costs one dictionary
look-up per request. ``set_user()`` and a ``user_resolver`` win over the dependency's user.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any, Callable, Optional

from .._errors import report_internal_error
from ..env import ENV_USER_DEPENDENCY
from ..request.framework import report_user
from ..request.state import current_request

_logger = logging.getLogger(__name__)

# The names apps give their auth dependency: FastAPI's tutorial and full-stack template
# (get_current_user, get_current_active_user, get_current_active_superuser), fastapi-users
# (its current_user(...) returns current_user_dependency) and common variants. A dependency
# loading some other user (get_user(user_id)) is deliberately not among them.
CONVENTIONAL_NAMES = frozenset(
    {
        "authenticated_user",
        "current_active_user",
        "current_user",
        "current_user_dependency",
        "get_authenticated_user",
        "get_current_active_superuser",
        "get_current_active_user",
        "get_current_user",
        "get_logged_in_user",
        "require_user",
    }
)
_MAX_DEPTH = 32
_MAX_PLANS = 10_000
_NOT_FOUND = object()

Plan = tuple[Any, Any, tuple[Any, ...]]  # (route dependant, user_dependency setting, user calls)


class FastAPIPatch:
    """Wraps ``fastapi.routing.solve_dependencies``; ``undo()`` puts FastAPI's back."""

    def __init__(self) -> None:
        import fastapi.routing

        routing: Any = fastapi.routing  # solve_dependencies is its import, not its export
        self._routing = routing
        self._original = original = routing.solve_dependencies
        plans: dict[int, Plan] = {}
        names = _Names()

        async def solve_dependencies(*args: Any, **kwargs: Any) -> Any:
            solved = await original(*args, **kwargs)
            state = current_request()
            if state is None:
                return solved
            try:
                dependant = kwargs.get("dependant")
                setting = state.config.user_dependency
                plan = plans.get(id(dependant))
                if plan is None or plan[0] is not dependant or plan[1] is not setting:
                    plan = (dependant, setting, _user_calls(dependant, names.matcher(setting)))
                    if len(plans) < _MAX_PLANS:
                        plans[id(dependant)] = plan
                if plan[2]:
                    _report_user(solved, plan[2])
            except Exception as exc:
                report_internal_error("fastapi.user_dependency", exc)
            return solved

        solve_dependencies.__wrapped__ = original  # type: ignore[attr-defined]
        routing.solve_dependencies = solve_dependencies

    def undo(self) -> None:
        self._routing.solve_dependencies = self._original


def _report_user(solved: Any, calls: tuple[Any, ...]) -> None:
    """Report the value the first of ``calls`` returned in this request, if it was solved."""
    cache = getattr(solved, "dependency_cache", None)
    if cache is None and isinstance(solved, tuple):  # FastAPI before 0.112: a 5-tuple
        cache = solved[-1]
    for key, value in (cache or {}).items():
        call = key[0] if type(key) is tuple and key else key
        for wanted in calls:
            if call is wanted:
                report_user(value)
                return


def _user_calls(dependant: Any, matches: Callable[[Any], bool]) -> tuple[Any, ...]:
    """The functions of ``dependant``'s dependencies, at any depth, that are the user's."""
    found: list[Any] = []
    seen: set[int] = set()
    pending = [(dependant, 0)]
    while pending:
        current, depth = pending.pop()
        for sub in getattr(current, "dependencies", None) or ():
            call = getattr(sub, "call", None)
            if call is not None and id(call) not in seen:
                seen.add(id(call))
                if matches(call):
                    found.append(call)
            if depth < _MAX_DEPTH:
                pending.append((sub, depth + 1))
    return tuple(found)


def _has_conventional_name(call: Any) -> bool:
    return getattr(call, "__name__", None) in CONVENTIONAL_NAMES


class _Names:
    """Turns the ``user_dependency`` setting into a test of a dependency's function."""

    def __init__(self) -> None:
        self._resolved: dict[str, Any] = {}

    def matcher(self, setting: Any) -> Callable[[Any], bool]:
        if setting is None:
            return _has_conventional_name
        target = self._resolve(setting) if isinstance(setting, str) else setting
        return lambda call: call is target

    def _resolve(self, name: str) -> Any:
        """The object ``module:attribute`` names, imported by now (the app's routes use it)."""
        found = self._resolved.get(name, _NOT_FOUND)
        if found is not _NOT_FOUND:
            return found
        module_name, _, path = name.strip().partition(":")
        try:
            found = sys.modules.get(module_name) or importlib.import_module(module_name)
            for part in path.split("."):
                found = getattr(found, part)
        except Exception as exc:
            _logger.error(
                "otel-user-tracking: user dependency %r (%s or user_dependency=) cannot be found (%s); "
                "no request is tagged from a FastAPI dependency until it names the app's auth dependency",
                name,
                ENV_USER_DEPENDENCY,
                type(exc).__name__,
            )
            found = None
        self._resolved[name] = found
        return found


def install(doors: Any) -> Optional[FastAPIPatch]:
    """The FastAPI adapter: the user dependency's value is the request's user (the front door
    itself comes with the Starlette adapter, FastAPI apps being Starlette apps)."""
    return FastAPIPatch()
