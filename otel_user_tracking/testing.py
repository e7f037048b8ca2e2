"""Helpers for tests: of apps that use otel-user-tracking, and of the package itself.

Usage in a test suite::

    from otel_user_tracking import testing

    @pytest.fixture(autouse=True)
    def _fresh_tracking():
        yield
        testing.reset()

``InMemorySink`` (``otel_user_tracking.sinks``) collects analytics events for assertions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ._errors import reset_internal_error_counts, set_raise_internal_errors
from ._limits import reset_cut_counts
from .config import reset_config
from .request.visitor import forget_salts

__all__ = ["internal_errors_raise", "reset"]


def reset() -> None:
    """Forget ``configure()`` values, the counts of swallowed internal errors and of values
    cut at a size cap, and the visitor-id salt, so the next test starts from the environment
    and defaults."""
    reset_config()
    reset_internal_error_counts()
    reset_cut_counts()
    forget_salts()


@contextlib.contextmanager
def internal_errors_raise(enabled: bool) -> Iterator[None]:
    """Within the block, failures of this package's own code re-raise (True) or are
    swallowed and counted as in production (False)."""
    previous = set_raise_internal_errors(enabled)
    try:
        yield
    finally:
        set_raise_internal_errors(previous)
