"""What both front doors (ASGI ``middleware.py``, WSGI ``wsgi.py``) share: an app's own options.

A door's options (``tag_policy=...``) win over ``configure()`` and the environment for its
app only; they are validated when the door is made, and what the request path derives from
the resulting ``Config`` (span maker, scrubber, visitor ids) is rebuilt only when that
configuration changes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import replace
from typing import Any, Generic, Optional, TypeVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from ..agents import warm_up
from ..config import Config, config_generation, get_config
from .prepared import PreparedRequest

P = TypeVar("P", bound=PreparedRequest)


class FrontDoor(ABC, Generic[P]):
    """The app, the providers and the options of one front door; ``_prepare()`` is what its
    requests use, made by the subclass's ``_derive(config)``."""

    def __init__(
        self,
        app: Any,
        *,
        tracer_provider: Optional[trace.TracerProvider] = None,
        meter_provider: Any = None,
        **options: Any,
    ) -> None:
        self.app = app
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._options = options
        if options:
            replace(get_config(), **options)  # validate now: bad options fail at construction
        self._prepared: Optional[P] = None
        self._generation = -1
        warm_up()  # the bot rules, built once a process, before the first request

    def _prepare(self) -> P:
        generation = config_generation()
        prepared = self._prepared
        if prepared is not None and self._generation == generation:
            return prepared
        config = get_config()
        if self._options:
            config = replace(config, **self._options)
        if prepared is None or prepared.config != config:
            prepared = self._derive(config)
            from .child_spans import ensure_user_id_processor

            ensure_user_id_processor(self._tracer_provider or trace.get_tracer_provider())
        self._prepared, self._generation = prepared, generation
        return prepared

    @abstractmethod
    def _derive(self, config: Config) -> P:
        """What this door's requests need from ``config`` (its span maker, scrubber, ...)."""


def span_to_enrich(outside: Context) -> Optional[trace.Span]:
    """The recording SERVER span a layer outside made current (the door enriches it), else None."""
    current = trace.get_current_span(outside)
    if current.is_recording() and getattr(current, "kind", None) is SpanKind.SERVER:
        return current
    return None
