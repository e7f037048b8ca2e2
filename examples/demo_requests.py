"""Send the demo app a realistic mix of traffic (stdlib only).

Browsers' user agents on purpose: curl- and python-like agents count as bots, which make no
pageviews. Usage: ``python examples/demo_requests.py [BASE_URL]``.
"""

from __future__ import annotations

import http.client
import json
import sys
import time
from typing import Optional
from urllib.parse import urlsplit

BROWSERS = [
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15",
        "en-US",
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
        "de-DE,de;q=0.9",
    ),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "fr-FR,fr;q=0.8"),
]


class Browser:
    def __init__(self, base: str, user_agent: str, language: str) -> None:
        parts = urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.headers = {"User-Agent": user_agent, "Accept-Language": language}
        self.statuses: list[int] = []

    def request(
        self, method: str, path: str, body: Optional[dict[str, str]] = None, referrer: Optional[str] = None
    ) -> tuple[int, bytes]:
        headers = dict(self.headers)
        if referrer:
            headers["Referer"] = referrer
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        finally:
            connection.close()
        self.statuses.append(response.status)
        return response.status, payload

    def login(self, username: str, password: str) -> None:
        status, payload = self.request("POST", "/login", {"username": username, "password": password})
        if status == 200:
            self.headers["Authorization"] = f"Bearer {json.loads(payload)['token']}"


def wait_until_up(base: str, timeout: float = 30.0) -> None:
    parts = urlsplit(base)
    deadline = time.monotonic() + timeout
    while True:
        try:
            connection = http.client.HTTPConnection(
                parts.hostname or "127.0.0.1", parts.port or 80, timeout=1
            )
            # A bot user agent: the readiness probe makes no pageview.
            connection.request("GET", "/openapi.json", headers={"User-Agent": "demo-readiness-probe (bot)"})
            connection.getresponse().read()
            connection.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"the app at {base} did not answer within {timeout:.0f}s") from None
            time.sleep(0.1)  # waiting for another process to listen: nothing to wait on but time


def main(base: str = "http://127.0.0.1:8000") -> None:
    wait_until_up(base)
    visitors = [Browser(base, agent, language) for agent, language in BROWSERS]
    jane, bob, anonymous = visitors
    anonymous.request(
        "GET",
        "/?utm_source=newsletter&utm_medium=email&utm_campaign=autumn&utm_term=shoes&utm_content=banner",
    )
    for product in (1, 2, 3):
        anonymous.request("GET", f"/products/{product}", referrer="https://www.google.com/")
    jane.login("jane", "correct horse")
    jane.request("GET", "/me")
    jane.request("GET", "/products/2?utm_source=twitter", referrer="https://t.co/abc")
    jane.request("POST", "/checkout?plan=pro")
    bob.login("bob", "battery staple")
    bob.request("GET", "/products/3", referrer="https://news.ycombinator.com/")
    bob.request("POST", "/checkout?plan=team")
    bob.request("GET", "/boom")
    jane.request("GET", "/boom")
    bob.request("GET", "/me?token=should-never-be-stored")  # scrubbed from spans and events
    sent = sum(len(visitor.statuses) for visitor in visitors)
    errors = sum(status >= 500 for visitor in visitors for status in visitor.statuses)
    print(f"demo traffic: {sent} requests from {len(visitors)} browsers, {errors} server errors on purpose")


if __name__ == "__main__":
    main(*sys.argv[1:2])
