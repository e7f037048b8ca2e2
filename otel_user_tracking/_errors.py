"""Internal-error handling: log once per site, count, swallow; re-raise under our own tests.

Instrumentation must never raise into the host app. Each failure site logs its first
failure (type only, never the message, which may hold user data) and counts the rest, so a
broken resolver on a busy server does not flood the logs.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

from .env import raise_internal_errors

_logger = logging.getLogger(__name__)
_lock = threading.Lock()
_counts: Counter[str] = Counter()
# Read once: set by our own test suite so that our bugs surface there.
_raise = [raise_internal_errors()]


def report_internal_error(site: str, exc: BaseException, *, user_code: bool = False) -> None:
    """Count a swallowed failure at ``site``; log it the first time it happens there.

    Failures of our own code re-raise when ``OTEL_PYTHON_USER_TRACKING_RAISE_INTERNAL_ERRORS=1``
    (set by our test suite) so bugs surface in tests; failures of code that is not ours
    (``user_code=True``: a resolver, a user object, another instrumentation) are always
    swallowed.
    """
    with _lock:
        _counts[site] += 1
        first = _counts[site] == 1
    if first:
        _logger.warning(
            "otel_user_tracking: %s failed with %s; the request continues untouched "
            "(further failures here are counted, not logged)",
            site,
            type(exc).__name__,
        )
    if not user_code and _raise[0]:
        raise exc


def internal_error_counts() -> dict[str, int]:
    """Failures swallowed so far, by site (e.g. ``{"user_resolver": 3}``)."""
    with _lock:
        return dict(_counts)


def reset_internal_error_counts() -> None:
    """Forget the counts and which sites were logged (``otel_user_tracking.testing.reset``)."""
    with _lock:
        _counts.clear()


def set_raise_internal_errors(enabled: bool) -> bool:
    """Make our own failures re-raise (True) or be swallowed; returns the previous setting."""
    previous, _raise[0] = _raise[0], enabled
    return previous
