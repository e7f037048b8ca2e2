"""What differs between the dependency releases we support, kept in this one place.

The route a request matched is left in ``scope["route"]`` by Starlette from 1.7 and by
FastAPI for its own routes, but not by older Starlette, nor by FastAPI's router (newest
included) for plain Starlette routes (``app.add_route``). There the route is found again at
the end of the request by matching the scope, with the path and root path it had before
routing (older Starlette's ``Mount`` rewrites them), against the app's router with
Starlette's own ``matches``, mounts followed.
"""

from __future__ import annotations

from typing import Any, Optional

from ..types import Scope

_MAX_MOUNT_DEPTH = 16


def scope_before_routing(scope: Scope) -> tuple[Any, Any]:
    """What routing may rewrite, kept to find the route again later: path and root path."""
    return scope.get("path"), scope.get("root_path")


def matched_route(scope: Scope, before_routing: Optional[tuple[Any, Any]]) -> tuple[Any, str]:
    """The route the router chose and the root path it is under; (None, "") if none was."""
    route = scope.get("route")
    if route is not None or before_routing is None or "router" not in scope:
        return route, str(scope.get("root_path", ""))
    path, root_path = before_routing
    view = {**scope, "path": path, "root_path": root_path, "path_params": {}}
    try:
        found = _match(scope["router"], view, 0)
    except Exception:  # a custom route's matches() failing must not cost the span
        found = None
    return found if found is not None else (None, "")


def route_before_routing(scope: Scope) -> Optional[str]:
    """The template of the route the app's router will choose, found before it routes (from
    ``scope["app"]``, Starlette's); None for other apps or when no route matches."""
    router = getattr(scope.get("app"), "router", None)
    if router is None:
        return None
    try:
        found = _match(router, {**scope, "path_params": {}}, 0)
    except Exception:  # a custom route's matches() failing must not cost the span
        return None
    path_format = getattr(found[0], "path_format", None) if found is not None else None
    return path_format if isinstance(path_format, str) else None


def _match(router: Any, scope: Scope, depth: int) -> Optional[tuple[Any, str]]:
    """Starlette's ``Router.app`` choice (first full match, else first partial), mounts followed."""
    from starlette.routing import Host, Match, Mount

    partial: Optional[tuple[Any, str]] = None
    for route in getattr(router, "routes", None) or ():
        match, child = route.matches(scope)
        if match is Match.NONE:
            continue
        routed = {**scope, **child}
        if match is Match.FULL:
            if isinstance(route, (Mount, Host)) and depth < _MAX_MOUNT_DEPTH:
                inner = _match(route, routed, depth + 1)
                if inner is not None:
                    return inner
            return route, str(routed.get("root_path", ""))
        if partial is None:
            partial = (route, str(routed.get("root_path", "")))
    return partial
