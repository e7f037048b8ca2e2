"""Background threads that share a core with the event loop must step aside, not just yield.

CPython lets a thread that wants the GIL wait up to ``sys.getswitchinterval()`` (5 ms)
before forcing a switch. A worker that releases the GIL briefly (``time.sleep(0)``, or
inside each ``sqlite3`` step) usually takes it back before the waiting event-loop thread is
even scheduled on the shared core, so the request waits out the whole interval: that was
most of the analytics' tail latency. A real sleep, however short, blocks the worker, the
OS runs the waiting thread, and that thread takes the GIL.

The same threads also run at a lower scheduling priority (``background_priority``): on a
shared core, a woken event loop otherwise waits for the kernel's wake-up granularity before
it preempts a busy worker; a niced worker is preempted at once yet still gets its share.
"""

from __future__ import annotations

import os
import threading
import time

PAUSE_SECONDS = 0.0001


def step_aside() -> None:
    """Block for a moment so a thread waiting for the GIL runs now (call between work slices)."""
    time.sleep(PAUSE_SECONDS)


BACKGROUND_NICENESS = 10


def background_priority() -> None:
    """Lower the calling thread's scheduling priority (Linux; elsewhere nothing happens)."""
    native_id = getattr(threading, "get_native_id", None)
    if native_id is None or not hasattr(os, "setpriority"):
        return
    try:
        current = os.getpriority(os.PRIO_PROCESS, native_id())
        os.setpriority(os.PRIO_PROCESS, native_id(), min(19, max(current, BACKGROUND_NICENESS)))
    except OSError:
        return
