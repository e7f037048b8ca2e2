"""The Django suite against our Django adapter: contrib's ``DjangoInstrumentor`` is replaced by
one whose ``instrument()`` installs our adapter (``DjangoPatch``) with both front doors, built
with the policy set aside."""

from __future__ import annotations

from typing import Any

from ours_flask import door_options

CONTRIB_SCOPE = "opentelemetry.instrumentation.django"


def substitute() -> None:
    import opentelemetry.instrumentation.django as otel_django

    otel_django.DjangoInstrumentor = DjangoInstrumentor  # type: ignore[misc,assignment]


def _hooks_of_contrib_middleware(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Contrib's ``instrument()`` keeps the hooks on its ``_DjangoMiddleware`` class, where its
    tests also set them: the door's hooks call whatever is there at the request."""
    from opentelemetry.instrumentation.django.middleware.otel_middleware import _DjangoMiddleware

    _DjangoMiddleware._otel_request_hook = kwargs.pop("request_hook", None)
    _DjangoMiddleware._otel_response_hook = kwargs.pop("response_hook", None)

    def request_hook(span: Any, request: Any) -> None:
        hook = _DjangoMiddleware._otel_request_hook
        if hook is not None:
            hook(span, request)

    def response_hook(span: Any, request: Any, response: Any) -> None:
        hook = _DjangoMiddleware._otel_response_hook
        if hook is not None:
            hook(span, request, response)

    return {"request_hook": request_hook, "response_hook": response_hook}


class DjangoInstrumentor:
    """Contrib's instrumentor's API, driving our Django adapter (the SQL commenter and
    ``OTEL_PYTHON_DJANGO_TRACED_REQUEST_ATTRS`` are not taken: the tests that rely on them are
    listed in by_design.toml)."""

    _patch: Any = None

    def instrument(self, **kwargs: Any) -> None:
        from otel_user_tracking.frameworks.django import DjangoPatch
        from otel_user_tracking.frameworks.registry import FrontDoors
        from otel_user_tracking.request.middleware import UserTrackingMiddleware
        from otel_user_tracking.request.wsgi import UserTrackingWSGIMiddleware

        if DjangoInstrumentor._patch is not None:
            return
        options = door_options(**kwargs, **_hooks_of_contrib_middleware(kwargs))
        doors = FrontDoors(
            asgi=lambda app: UserTrackingMiddleware(app, **options),
            wsgi=lambda app: UserTrackingWSGIMiddleware(app, **options),
        )
        DjangoInstrumentor._patch = DjangoPatch(doors)

    def uninstrument(self, **kwargs: Any) -> None:
        if DjangoInstrumentor._patch is not None:
            DjangoInstrumentor._patch.undo()
            DjangoInstrumentor._patch = None

    @property
    def is_instrumented_by_opentelemetry(self) -> bool:
        return DjangoInstrumentor._patch is not None
