"""Running a ``DashboardServer`` in a thread for the length of a test."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from otel_user_tracking.analytics.dashboard import DashboardServer


@contextlib.contextmanager
def running(server: DashboardServer) -> Iterator[DashboardServer]:
    """Serve ``server`` from a daemon thread; shut it down and close its socket afterwards."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
