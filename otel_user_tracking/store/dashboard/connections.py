"""The dashboard's HTTP front door: a fixed pool of workers, idle connections parked, slow ones cut.

A thread per connection (``ThreadingHTTPServer``) lets whoever opens connections hold a
thread each, for ever. Here an accepted connection waits in a selector until its request
starts: it costs a file descriptor and no thread, and is closed after ``idle_timeout``; when
``max_open`` are open, the oldest idle one makes room (or, none being idle, the new one is
answered 503). A fixed pool of ``workers`` threads reads and answers requests, one request a
connection: the request (line, headers and body) must arrive whole within
``request_timeout`` however slowly it trickles, and the answer be taken within
``write_timeout``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import queue
import selectors
import socket
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from http.server import HTTPServer
from typing import Any, Optional

logger = logging.getLogger(__name__)
_REFUSAL = (
    b"HTTP/1.0 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)
_Address = Any  # what accept() returns beside the socket
_ACCEPTS_PER_WAKE = 64
_WAKE = object()


@dataclass(frozen=True)
class ConnectionLimits:
    """How many connections the dashboard holds, and for how long.

    Usage: ``DashboardServer(db, limits=ConnectionLimits(workers=4))``.

    Args:
        workers: Requests served at once (threads, started with the server).
        max_open: Connections open at once, idle ones included.
        idle_timeout: Seconds an accepted connection may wait before its request starts.
        request_timeout: Seconds from the request's first byte to its last (line, headers, body).
        write_timeout: Seconds the client has to take the whole answer.
    """

    workers: int = 8
    max_open: int = 256
    idle_timeout: float = 15.0
    request_timeout: float = 10.0
    write_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.workers < 1 or self.max_open < self.workers:
            raise ValueError("ConnectionLimits: workers must be at least 1 and max_open at least workers")
        for name in ("idle_timeout", "request_timeout", "write_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ConnectionLimits: {name} must be a positive number of seconds")


class _DeadlineReader(io.RawIOBase):
    """A socket's bytes until a deadline: each read waits at most the time left, then times out."""

    def __init__(self, connection: socket.socket, deadline: float, after: float) -> None:
        self._connection = connection
        self._deadline = deadline
        self._after = after  # the socket's timeout again once a read returns (for the answer)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("the request did not arrive in time")
        self._connection.settimeout(left)
        try:
            return self._connection.recv_into(buffer)
        finally:
            self._connection.settimeout(self._after)


class BoundedHTTPServer(HTTPServer):
    """An ``HTTPServer`` with bounded threads and connections; ``serve_forever``/``shutdown`` as usual.

    The handler reads its request through ``request_reader`` and answers one request a
    connection (HTTP/1.0, as ``BaseHTTPRequestHandler`` does by default).
    """

    request_queue_size = 128  # connections the kernel holds until accepted (socketserver's is 5)

    def __init__(self, address: tuple[str, int], handler: Any, limits: ConnectionLimits) -> None:
        self.limits = limits
        self._idle: OrderedDict[socket.socket, tuple[float, _Address]] = OrderedDict()
        # A connection whose request has started, its address and the time its request must be in by.
        self._work: queue.SimpleQueue[Optional[tuple[socket.socket, _Address, float]]] = queue.SimpleQueue()
        self._deadline = threading.local()  # of the request a worker serves
        self._busy = 0  # connections handed to the workers and not yet closed
        self._busy_lock = threading.Lock()
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self._waker: Optional[socket.socket] = None
        super().__init__(address, handler)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._stopped.clear()
        workers = [
            threading.Thread(target=self._serve_requests, name=f"dashboard-worker-{n}", daemon=True)
            for n in range(self.limits.workers)
        ]
        for worker in workers:
            worker.start()
        wake, waker = socket.socketpair()  # shutdown() writes to it: no wait for the poll
        self._waker = waker
        try:
            with selectors.DefaultSelector() as selector:
                self.socket.setblocking(False)
                selector.register(self.socket, selectors.EVENT_READ, None)
                selector.register(wake, selectors.EVENT_READ, _WAKE)
                while not self._stop.is_set():
                    wait = poll_interval
                    if self._idle:
                        first = next(iter(self._idle.values()))[0]
                        wait = max(0.0, min(wait, first - time.monotonic()))
                    for key, _ in selector.select(wait):
                        if key.data is _WAKE:
                            continue
                        if key.data is None:
                            self._accept(selector)
                        else:
                            self._start_request(selector, key.fileobj)  # type: ignore[arg-type]
                    self._expire(selector, time.monotonic())
        finally:
            wake.close()
            waker.close()
            for connection in list(self._idle):
                self._close_idle(None, connection)
            for _ in workers:
                self._work.put(None)  # after the requests already handed over
            self._stop.clear()  # a shutdown() before serve_forever ran stops it at once, as the stdlib's
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop ``serve_forever`` and wait until it has returned (at once when not serving)."""
        self._stop.set()
        waker = self._waker
        if waker is not None:
            with contextlib.suppress(OSError):
                waker.send(b"\0")
        self._stopped.wait()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The stdlib prints a traceback to stderr; one line at WARNING says enough.
        logger.warning("dashboard: a request failed (%s)", type(sys.exc_info()[1]).__name__)

    def request_reader(self, connection: socket.socket) -> io.BufferedReader:
        """The input of the request a worker serves: to be read whole by its deadline."""
        connection.settimeout(self.limits.write_timeout)
        reader = _DeadlineReader(connection, self._deadline.value, self.limits.write_timeout)
        return io.BufferedReader(reader)

    def open_connections(self) -> int:
        """Connections open now: idle ones and those the workers hold."""
        with self._busy_lock:
            return len(self._idle) + self._busy

    def _accept(self, selector: selectors.BaseSelector) -> None:
        for _ in range(_ACCEPTS_PER_WAKE):
            try:
                connection, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # the peer left before accept, or no descriptors left
                return
            if self.open_connections() >= self.limits.max_open:
                if not self._idle:
                    _refuse(connection)
                    continue
                self._close_idle(selector, next(iter(self._idle)))
            self._idle[connection] = (time.monotonic() + self.limits.idle_timeout, address)
            selector.register(connection, selectors.EVENT_READ, address)

    def _start_request(self, selector: selectors.BaseSelector, connection: socket.socket) -> None:
        selector.unregister(connection)
        _, address = self._idle.pop(connection)
        with self._busy_lock:
            self._busy += 1
        self._work.put((connection, address, time.monotonic() + self.limits.request_timeout))

    def _expire(self, selector: selectors.BaseSelector, now: float) -> None:
        while self._idle:
            connection, (deadline, _) = next(iter(self._idle.items()))
            if deadline > now:
                return
            self._close_idle(selector, connection)

    def _close_idle(self, selector: Optional[selectors.BaseSelector], connection: socket.socket) -> None:
        self._idle.pop(connection, None)
        if selector is not None:
            selector.unregister(connection)
        connection.close()

    def _serve_requests(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            connection, address, deadline = item
            self._deadline.value = deadline
            try:
                if deadline > time.monotonic():  # else it waited out its time behind others
                    self.finish_request(connection, address)
            except Exception:
                self.handle_error(connection, address)
            finally:
                self.shutdown_request(connection)
                with self._busy_lock:
                    self._busy -= 1


def _refuse(connection: socket.socket) -> None:
    try:
        connection.setblocking(False)
        connection.send(_REFUSAL)
    except OSError:
        pass
    finally:
        connection.close()
