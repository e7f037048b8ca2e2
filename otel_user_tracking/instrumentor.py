"""``UserTrackingInstrumentor``: the BaseInstrumentor glue that ``opentelemetry-instrument`` loads.

It validates the configuration, installs the adapter of every installed web framework
(``frameworks/``) so each of its apps gets the middleware, and (under the CLI) adds the
child-span processor, the analytics processor and the analytics-aware sampler to the SDK
tracer provider. A configuration error stops the start with a message naming the variable;
any other failure is logged and leaves the app uninstrumented rather than crashed.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Collection, Optional

from opentelemetry import trace
from opentelemetry.instrumentation.dependencies import DependencyConflict, get_dependency_conflicts
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from ._errors import report_internal_error
from .analytics.settings import DeliverySettings
from .config import configure, get_config
from .env import delivery_from_env, outbox_settings, sinks_setting
from .package import _instruments_any
from .request.child_spans import ensure_user_id_processor
from .request.shutdown import install_sigterm_flush, uninstall_sigterm_flush
from .sinks import sinks_from_env

_logger = logging.getLogger(__name__)


class UserTrackingInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Instruments Starlette and FastAPI apps with user-aware server spans and analytics.

    Usage: ``UserTrackingInstrumentor().instrument(tracer_provider=provider, tag_policy=policy)``,
    or nothing at all under ``opentelemetry-instrument``.

    ``instrument()`` accepts ``tracer_provider``, ``meter_provider``, ``analytics`` (False to
    add no analytics processor; default: only when the provider is the global SDK one) and
    any ``configure()`` option.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments_any

    def _check_dependency_conflicts(self) -> Optional[DependencyConflict]:
        # Any one of the frameworks will do, as the distribution's `instruments-any` extra says.
        return get_dependency_conflicts((), _instruments_any)

    def _instrument(self, **kwargs: Any) -> None:
        tracer_provider = kwargs.pop("tracer_provider", None)
        meter_provider = kwargs.pop("meter_provider", None)
        analytics = kwargs.pop("analytics", None)
        try:
            if kwargs:
                configure(**kwargs)
            config = get_config()
            sinks = sinks_from_env(sinks_setting()) if _wants_analytics(tracer_provider, analytics) else []
            delivery = delivery_from_env()  # validated now, so a bad value stops the start
            outbox_settings()
        except ValueError as exc:
            _configuration_error(exc)
            raise
        try:
            self._install(config, tracer_provider, meter_provider, sinks, delivery)
        except Exception as exc:  # a bug here must not stop the app from starting
            report_internal_error("instrument", exc)

    def _install(
        self,
        config: Any,
        tracer_provider: Any,
        meter_provider: Any,
        sinks: list[Any],
        delivery: DeliverySettings,
    ) -> None:
        from .frameworks import FrontDoors, install_adapters

        def asgi(app: Any) -> Any:
            from .request.middleware import UserTrackingMiddleware

            return UserTrackingMiddleware(app, tracer_provider=tracer_provider, meter_provider=meter_provider)

        def wsgi(app: Any) -> Any:
            from .request.wsgi import UserTrackingWSGIMiddleware

            return UserTrackingWSGIMiddleware(
                app, tracer_provider=tracer_provider, meter_provider=meter_provider
            )

        self._patches = install_adapters(FrontDoors(asgi=asgi, wsgi=wsgi))
        provider = tracer_provider or trace.get_tracer_provider()
        ensure_user_id_processor(provider)
        if sinks:
            _add_analytics(provider, config, sinks, delivery)
        install_sigterm_flush()  # servers without a lifespan shutdown (WSGI, Django) flush on SIGTERM

    def _uninstrument(self, **kwargs: Any) -> None:
        for patch in getattr(self, "_patches", {}).values():
            patch.undo()
        self._patches = {}
        uninstall_sigterm_flush()


def _wants_analytics(tracer_provider: Any, analytics: Optional[bool]) -> bool:
    """Analytics by default only for the global provider (the CLI's), unless asked for."""
    if analytics is None:
        return tracer_provider is None
    return analytics


def _add_analytics(provider: Any, config: Any, sinks: list[Any], delivery: DeliverySettings) -> None:
    """Add the analytics processor and the analytics-aware sampler to an SDK provider."""
    if not hasattr(provider, "add_span_processor"):
        _logger.warning("the tracer provider is not the SDK's; analytics processor not added")
        for sink in sinks:
            sink.close()
        return
    from .analytics.processor import AnalyticsSpanProcessor

    provider.add_span_processor(AnalyticsSpanProcessor(sinks=sinks, settings=delivery))
    if config.analytics_sampler:
        from .analytics.sampler import install_analytics_sampler

        install_analytics_sampler(provider)


def _configuration_error(exc: ValueError) -> None:
    """Under ``opentelemetry-instrument`` stop the start with one clear line.

    The CLI's loader would log and swallow the error and the app would start with the
    policy unapplied; an explicit call to ``instrument()`` gets the ``ValueError`` instead.
    """
    if _AUTO_INSTRUMENTATION not in sys.modules:
        return  # called from code: the ValueError reaches the caller
    sys.stderr.write(f"otel-user-tracking configuration error: {exc}\n")
    sys.stderr.flush()
    os._exit(2)


# The CLI's sitecustomize is imported as plain ``sitecustomize``; the loader it runs is this.
_AUTO_INSTRUMENTATION = "opentelemetry.instrumentation.auto_instrumentation._load"
