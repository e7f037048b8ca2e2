"""A local HTTP endpoint on 127.0.0.1 that answers from a script, for delivery tests.

``server.answers`` is a list of (status, headers) consumed one per request (then 200);
``hang`` makes requests wait (until released) so client timeouts fire. Every request body
is decoded (gzip, JSON) and kept; ``wait_for`` blocks on a condition, never polls.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Received:
    def __init__(self, path: str, headers: dict[str, str], body: bytes) -> None:
        self.path = path
        self.headers = headers
        self.raw = body
        data = gzip.decompress(body) if headers.get("content-encoding") == "gzip" else body
        try:
            self.json: Any = json.loads(data)
        except ValueError:
            self.json = None


class ScriptedHTTPServer:
    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str]]] = []
        self.received: list[Received] = []
        self.hang = threading.Event()  # set: requests wait for ``release``
        self.release = threading.Event()
        self._changed = threading.Condition()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                headers = {name.lower(): value for name, value in self.headers.items()}
                with owner._changed:
                    owner.received.append(Received(self.path, headers, body))
                    status, extra = owner.answers.pop(0) if owner.answers else (200, {})
                    owner._changed.notify_all()
                if owner.hang.is_set():
                    owner.release.wait(30)
                    return
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> ScriptedHTTPServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def events(self) -> list[dict[str, Any]]:
        """Every event received, in arrival order (webhook bodies), retries included."""
        with self._changed:
            return [event for request in self.received for event in (request.json or {}).get("batch", [])]

    def wait_for(self, predicate: Callable[[ScriptedHTTPServer], bool], timeout: float = 10.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self), timeout):
                raise TimeoutError(f"condition not met; {len(self.received)} requests received")


def refused_url() -> str:
    """A loopback URL where nothing listens (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/events"
