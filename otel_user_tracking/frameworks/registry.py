"""Which framework adapters exist, and installing those whose framework is installed.

An adapter is a module of this folder with an ``install(doors)`` function that puts the
front doors (``FrontDoors``) into every app of its framework and returns an ``Undo``. Adding
a framework means its module, one ``Registration`` below, and its tests.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

from opentelemetry.instrumentation.dependencies import get_dependency_conflicts

from .._errors import report_internal_error

_logger = logging.getLogger(__name__)

Wrap = Callable[[Any], Any]


@dataclass(frozen=True)
class FrontDoors:
    """How an adapter wraps an app: ``asgi(app)`` and ``wsgi(app)`` return the app instrumented."""

    asgi: Wrap
    wsgi: Wrap


class Undo(Protocol):
    def undo(self) -> None: ...


@dataclass(frozen=True)
class Registration:
    """A framework adapter: its name, the distribution that must be installed, its module."""

    name: str
    requirement: str
    module: str

    def installed(self) -> bool:
        return get_dependency_conflicts([self.requirement]) is None


# In the order they are installed: an adapter that builds on another's patch comes after it.
ADAPTERS: tuple[Registration, ...] = (
    Registration("starlette", "starlette >= 0.25", "otel_user_tracking.frameworks.starlette"),
    Registration("flask", "flask >= 2.3", "otel_user_tracking.frameworks.flask"),
    Registration("django", "django >= 4.2", "otel_user_tracking.frameworks.django"),
    Registration("fastapi", "fastapi >= 0.92", "otel_user_tracking.frameworks.fastapi"),
    Registration("litestar", "litestar >= 2.19", "otel_user_tracking.frameworks.litestar"),
    Registration("quart", "quart >= 0.20", "otel_user_tracking.frameworks.quart"),
)


def requirements() -> tuple[str, ...]:
    """What ``opentelemetry-instrument`` checks: any one of these frameworks will do."""
    return tuple(adapter.requirement for adapter in ADAPTERS)


def install_adapters(doors: FrontDoors) -> dict[str, Undo]:
    """Install the adapter of every framework that is installed; one failing skips only itself."""
    installed: dict[str, Undo] = {}
    for adapter in ADAPTERS:
        if not adapter.installed():
            continue
        undo: Optional[Undo] = None
        try:
            undo = importlib.import_module(adapter.module).install(doors)
        except Exception as exc:
            report_internal_error(f"install.{adapter.name}", exc)
        if undo is not None:
            installed[adapter.name] = undo
    if not installed:
        _logger.warning(
            "otel-user-tracking: no supported web framework found to instrument (%s); wrap the app "
            "in UserTrackingMiddleware (ASGI) or UserTrackingWSGIMiddleware (WSGI)",
            ", ".join(adapter.name for adapter in ADAPTERS),
        )
    return installed
