"""The store used while ``OTEL_PYTHON_USER_TRACKING_SINKS`` is unset: an implicit default
that never stops the app's start."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Optional

from .sqlite.sink import SQLiteSink, durable_from_env

_logger = logging.getLogger(__name__)

DEFAULT_PATH = Path("otel-user-tracking.db")  # in the working directory


def default_store() -> Optional[SQLiteSink]:
    """The store used while ``OTEL_PYTHON_USER_TRACKING_SINKS`` is unset; None: analytics off.

    ``./otel-user-tracking.db`` where it can be opened; else (a read-only working directory,
    a corrupt or newer file there) a store of this working directory in the user's state
    directory (``$XDG_STATE_HOME`` or ``~/.local/state``, ``otel-user-tracking/``); else none.
    An implicit default never stops the app's start: each fallback is one warning naming
    the variable that chooses the store.
    """
    from ..env import store_settings

    retention_days, max_store_mb = store_settings()
    durable = durable_from_env()
    problems: list[str] = []
    for path in (DEFAULT_PATH, _state_store()):
        if path is None:
            continue
        sink = SQLiteSink(path, retention_days=retention_days, max_store_mb=max_store_mb, durable=durable)
        problem = sink._open_problem()
        if problem is None:
            if problems:
                _logger.warning(
                    "analytics store %s: analytics go to %s instead; set %s to choose the store",
                    problems[0],
                    path,
                    _CHOOSE,
                )
            return sink
        problems.append(f"{path} cannot be used ({type(problem).__name__}: {problem})")
    _logger.warning("analytics store %s: analytics are off; set %s", "; ".join(problems), _CHOOSE)
    return None


_CHOOSE = "OTEL_PYTHON_USER_TRACKING_SINKS=sqlite:////writable/path.db (or none)"


def _state_store() -> Optional[Path]:
    """This working directory's store in the user's state directory (None without a home)."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    if not os.path.isabs(state):
        return None  # no home directory to expand ``~`` to
    cwd = os.path.abspath(os.getcwd())
    digest = hashlib.sha256(cwd.encode(errors="surrogateescape")).hexdigest()[:12]
    return Path(state) / "otel-user-tracking" / f"{os.path.basename(cwd) or 'root'}-{digest}.db"
