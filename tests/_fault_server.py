"""A loopback HTTP endpoint that misbehaves on cue, at the socket level, for fault tests.

``server.script`` lists the answers to the next requests (then ``server.default``, "ok"):

* ``ok``: 200 with ``{}``; ``error200``: 200 whose body is an error (``{"error": ...}``);
* ``503``; ``429`` with ``Retry-After: server.retry_after``; ``400``; ``400echo``: 400 whose
  body echoes the whole request back, headers included (as some proxies and backends do);
* ``reset``: the connection is reset (RST) once the request is read;
* ``garbage``: bytes that are not HTTP, then the connection closes;
* ``hang``: the request is read and never answered, until the server stops.

Every request is kept (``requests``: mode, arrival time, raw head and decoded body);
``wait_for`` blocks on a condition, never polls. Each answer closes the connection.
"""

from __future__ import annotations

import gzip
import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

OK_STATUSES = frozenset({"ok", "error200"})


@dataclass
class FaultRequest:
    mode: str
    at: float
    head: bytes
    body: bytes

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def event_ids(self) -> list[str]:
        data = self.json
        batch = data.get("batch", []) if isinstance(data, dict) else []
        return [event.get("event_id") or event.get("uuid") or event.get("messageId") for event in batch]


class FaultServer:
    def __init__(self, retry_after: str = "0.3") -> None:
        self.script: list[str] = []
        self.default = "ok"
        self.retry_after = retry_after
        self.requests: list[FaultRequest] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        self._listener.close()

    def set(self, default: str, *script: str) -> None:
        """Answer the next requests from ``script``, then every later one with ``default``."""
        with self._changed:
            self.script, self.default = list(script), default

    def ok_event_ids(self) -> list[str]:
        """Event ids of the requests answered with a 200, in arrival order."""
        with self._changed:
            return [
                i for request in self.requests if request.mode in OK_STATUSES for i in request.event_ids()
            ]

    def wait_for(self, predicate: Callable[[FaultServer], bool], timeout: float = 10.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self), timeout):
                raise TimeoutError(f"condition not met; {len(self.requests)} requests received")

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._handle, args=(connection,), daemon=True).start()

    def _handle(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(5)
            try:
                head, body = _read_request(connection)
            except (OSError, ValueError):
                return
            with self._changed:
                mode = self.script.pop(0) if self.script else self.default
                self.requests.append(FaultRequest(mode, time.monotonic(), head, body))
                self._changed.notify_all()
            try:
                self._answer(connection, mode, head + b"\r\n\r\n" + body)
            except OSError:
                return

    def _answer(self, connection: socket.socket, mode: str, request: bytes) -> None:
        if mode == "reset":
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        if mode == "hang":
            self._stop.wait(30)
            return
        if mode == "garbage":
            connection.sendall(b"\x00\xffthis is not HTTP\r\n\r\n")
            return
        status, headers, body = {
            "ok": ("200 OK", "", b"{}"),
            "error200": ("200 OK", "", b'{"error": "invalid project", "status": 0}'),
            "503": ("503 Service Unavailable", "", b"busy"),
            "429": ("429 Too Many Requests", f"Retry-After: {self.retry_after}\r\n", b"slow down"),
            "400": ("400 Bad Request", "", b'{"error": "bad request"}'),
            "400echo": ("400 Bad Request", "", b"you sent: " + request),
        }[mode]
        connection.sendall(
            f"HTTP/1.1 {status}\r\n{headers}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )


def _read_request(connection: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            raise ValueError("closed before the request's head")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    fields = dict(
        line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line
    )  # fmt: skip
    headers = {name.strip().lower(): value.strip() for name, value in fields.items()}
    length = int(headers.get(b"content-length", b"0"))
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            raise ValueError("closed before the request's body")
        body += chunk
    if headers.get(b"content-encoding") == b"gzip":
        body = gzip.decompress(body)
    return head, body
