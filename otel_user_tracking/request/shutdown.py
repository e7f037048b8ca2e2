"""Flushing spans and analytics on SIGTERM where no lifespan shutdown does it.

WSGI servers and Django have no lifespan protocol. Where SIGTERM keeps Python's default
action (``flask run``, ``manage.py runserver``, a bare ``wsgiref`` server), the process dies
at once: no ``atexit`` hook runs, and every span and analytics event still queued is lost.
``install_sigterm_flush()`` puts a handler in front of whatever SIGTERM did before: it
flushes everything within the shutdown budget (``lifespan.flush_everything``), then does
exactly what the previous disposition did (the default action: the process dies by the
signal as before; a Python handler: it is called). Servers that install their own handler
later (gunicorn's workers, uvicorn) replace ours and keep their behaviour unchanged:
gunicorn's workers exit through ``sys.exit`` and the SDK's ``atexit`` shutdown flushes;
uvicorn restores the handler it found (ours) and re-raises the signal after its shutdown.

The flush runs on its own thread, joined with the budget: the signal interrupts the main
thread wherever it was, possibly holding a lock the flush needs, and a deadlock there would
keep a dying process alive until its SIGKILL.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType
from typing import Any, Optional

from .._errors import report_internal_error

_logger = logging.getLogger(__name__)
JOIN_MARGIN_SECONDS = 1.0  # beyond the flush's own budget, before the signal goes on regardless


class SigtermFlush:
    """The SIGTERM handler: flush, then what the previous disposition did.

    Args:
        previous: What ``signal.getsignal(SIGTERM)`` returned before (a handler, SIG_DFL).
        budget: Seconds the flush may take (default: the processors' shutdown timeout).
    """

    def __init__(self, previous: Any, budget: Optional[float] = None) -> None:
        self.previous = previous
        self._budget = budget

    def __call__(self, signum: int, frame: Optional[FrameType]) -> None:
        from .lifespan import flushed_for_exit

        if not flushed_for_exit():  # uvicorn re-raises SIGTERM after its lifespan flushed
            self.flush()
        previous = self.previous
        if callable(previous):
            previous(signum, frame)
        elif previous in (signal.SIG_DFL, None):
            # The default action, as if we had not been there: die by the signal.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def flush(self) -> None:
        """Flush everything on a worker thread, waiting at most the budget (and a margin)."""
        budget = self._budget if self._budget is not None else _default_budget()
        worker = threading.Thread(target=self._run_flush, name="otel-user-tracking-sigterm", daemon=True)
        worker.start()
        worker.join(budget + JOIN_MARGIN_SECONDS)
        if worker.is_alive():
            _logger.warning("otel-user-tracking: the flush at SIGTERM did not finish within %.1f s", budget)

    def _run_flush(self) -> None:
        try:
            from .lifespan import flush_everything

            flush_everything(self._budget)
        except Exception as exc:
            report_internal_error("sigterm_flush", exc)


_installed: Optional[SigtermFlush] = None


def _default_budget() -> float:
    from ..analytics.processor import live_processors
    from .lifespan import DEFAULT_BUDGET_SECONDS

    processors = live_processors()
    return max((p.settings.shutdown_timeout for p in processors), default=DEFAULT_BUDGET_SECONDS)


def install_sigterm_flush() -> Optional[SigtermFlush]:
    """Put the flushing handler in front of SIGTERM's current disposition, once per process.

    Does nothing off the main thread (only it may set handlers), where SIGTERM is ignored
    (``SIG_IGN``: the process is not meant to die of it), or where SIGTERM does not exist.
    Returns the handler installed, or the one installed before.
    """
    global _installed
    if _installed is not None:
        return _installed
    sigterm = getattr(signal, "SIGTERM", None)
    if sigterm is None or threading.current_thread() is not threading.main_thread():
        return None
    try:
        previous = signal.getsignal(sigterm)
        if previous is signal.SIG_IGN:
            return None
        handler = SigtermFlush(previous)
        signal.signal(sigterm, handler)
    except (ValueError, OSError) as exc:  # an embedded interpreter without signals
        report_internal_error("sigterm_install", exc)
        return None
    _installed = handler
    return handler


def uninstall_sigterm_flush() -> None:
    """Give SIGTERM back what it had, if our handler is still the one installed."""
    global _installed
    handler: Optional[SigtermFlush] = _installed
    _installed = None
    if handler is None or threading.current_thread() is not threading.main_thread():
        return
    previous = handler.previous
    try:
        if signal.getsignal(signal.SIGTERM) is handler:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
    except (ValueError, OSError) as exc:
        report_internal_error("sigterm_uninstall", exc)
