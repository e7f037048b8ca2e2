"""The process's salt source: the store's when a sink keeps salts, else random per process.

The request path reads ``current.source`` (one module attribute). An analytics processor
whose sinks include a store that keeps salts (``SaltKeeper``) installs a ``StoredSalts``
over it at construction and removes it at shutdown; a configured visitor secret
(``Config.visitor_secret``) takes precedence per app, in ``request/visitor.py``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Optional

from .base import SaltKeeper, SaltSource
from .memory import RandomSalts
from .secret import VISITOR_SECRET_ENV
from .stored import StoredSalts

_logger = logging.getLogger(__name__)

source: SaltSource = RandomSalts()
_owner: Optional[object] = None
_lock = threading.Lock()
_said_per_process = False


def use_store_salts(owner: object, sinks: Iterable[object], *, secret: bool) -> Optional[SaltSource]:
    """Install the salts of the first sink that keeps them, unless a source is installed already.

    Args:
        owner: Who installs it (the processor); only it can remove it (``release``).
        sinks: The owner's sinks.
        secret: A visitor secret is configured: it is used instead, so nothing is installed.

    Returns the installed source (started: today's salt is usually known on return), or None.
    """
    global source, _owner
    keeper = next((sink for sink in sinks if isinstance(sink, SaltKeeper)), None)
    if secret:
        return None
    if keeper is None:
        _say_per_process()
        return None
    with _lock:
        if _owner is not None:
            return None  # another processor's store already decides (the first one wins)
        installed = StoredSalts(keeper.day_salts())
        source, _owner = installed, owner
    installed.start()
    return installed


def release(owner: object) -> None:
    """Remove the source ``owner`` installed (its shutdown): back to random salts per process."""
    global source, _owner
    with _lock:
        if _owner is not owner or _owner is None:
            return
        stopped, source, _owner = source, RandomSalts(), None
    stopped.close()


def reset() -> None:
    """Stop any installed source and start again from random salts (``testing.reset``)."""
    global source, _owner, _said_per_process
    with _lock:
        stopped, source, _owner = source, RandomSalts(), None
        _said_per_process = False
    stopped.close()


def _say_per_process() -> None:
    global _said_per_process
    with _lock:
        if _said_per_process:
            return
        _said_per_process = True
    _logger.warning(
        "visitor ids are per process: no sink keeps the day's salt and %s is not set, so each "
        "worker process and each restart counts a visitor anew; use the embedded store or a "
        "PostgreSQL store, or set %s",
        VISITOR_SECRET_ENV,
        VISITOR_SECRET_ENV,
    )
