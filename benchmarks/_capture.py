"""A loopback PostHog for the benchmarks: answers 200 to every batch and counts its events."""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class CaptureServer:
    """Counts the events of every batch POSTed to ``url``; ``wait_for`` blocks until enough came."""

    def __init__(self) -> None:
        owner = self
        self.events = 0
        self._arrived = threading.Condition()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                batch = json.loads(body).get("batch", [])
                with owner._arrived:
                    owner.events += len(batch)
                    owner._arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float) -> bool:
        """Whether ``count`` events in all have arrived within ``timeout`` seconds."""
        with self._arrived:
            return self._arrived.wait_for(lambda: self.events >= count, timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
