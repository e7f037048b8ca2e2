"""User-aware OpenTelemetry traces and privacy-safe product analytics for ASGI and WSGI apps."""

from __future__ import annotations

from . import sinks
from ._errors import internal_error_counts
from ._limits import cut_counts
from .analytics.events import AnalyticsEvent
from .analytics.processor import AnalyticsSpanProcessor
from .analytics.sampler import AnalyticsAwareSampler
from .config import Config, configure, get_config
from .instrumentor import UserTrackingInstrumentor
from .policy import TagPolicy
from .request.api import capture_exception, set_user, track
from .request.identity import UserInfo
from .request.middleware import UserTrackingMiddleware
from .request.wsgi import UserTrackingWSGIMiddleware
from .version import __version__

__all__ = [
    "AnalyticsAwareSampler",
    "AnalyticsEvent",
    "AnalyticsSpanProcessor",
    "Config",
    "TagPolicy",
    "UserInfo",
    "UserTrackingInstrumentor",
    "UserTrackingMiddleware",
    "UserTrackingWSGIMiddleware",
    "__version__",
    "capture_exception",
    "configure",
    "cut_counts",
    "get_config",
    "internal_error_counts",
    "set_user",
    "sinks",
    "track",
]
