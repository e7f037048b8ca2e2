"""What the request path hands the analytics path besides the span's attributes.

The analytics processor is one per tracer provider, but options are per app:
``UserTrackingMiddleware(app, ignore_bots=False)`` must change that app's pageviews only.
The middleware that owns a request pins its ``Config`` to the request's SDK span object
(never to the exported attributes), and the processor converts the span under that
``Config``; spans no middleware owned are converted under the global one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from .config import Config

_SLOT = "_otel_user_tracking_config"


def pin_config(span: Any, config: Config) -> None:
    """Remember the ``Config`` of the app that served the request on its span object."""
    try:
        setattr(span, _SLOT, config)
    except (AttributeError, TypeError):  # a span type without an instance dict
        return


def pinned_config(span: Any) -> Optional[Config]:
    """The ``Config`` pinned by ``pin_config``, or None."""
    return getattr(span, _SLOT, None)
