"""User-aware OpenTelemetry traces and privacy-safe product analytics for ASGI apps."""

from __future__ import annotations

from . import sinks
from ._errors import internal_error_counts
from ._tagging import set_user
from .config import Config, configure, get_config
from .context import capture_exception, track
from .events import AnalyticsEvent
from .identity import UserInfo
from .instrumentor import UserTrackingInstrumentor
from .middleware import UserTrackingMiddleware
from .policy import TagPolicy
from .processor import AnalyticsSpanProcessor
from .sampler import AnalyticsAwareSampler
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
    "__version__",
    "capture_exception",
    "configure",
    "get_config",
    "internal_error_counts",
    "set_user",
    "sinks",
    "track",
]
