"""Headless Chromium (Debian's ``chromium``) driven over the DevTools protocol, for browser tests.

Usage::

    with chromium(tmp_path) as ws_url:
        async with DevTools.connect(ws_url) as page:
            await page.call("Network.enable")
            await page.navigate("http://127.0.0.1:8765/")
            value = await page.evaluate("document.title")

``DevTools`` keeps the events the browser sends between answers, so a test waits for the
event it needs (``Page.loadEventFired``) instead of sleeping, and reads every
``Network.requestWillBeSent`` the page made.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import itertools
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Optional

import websockets

from ._uvicorn import free_port

START_TIMEOUT = 30.0


def chromium_binary() -> Optional[str]:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _devtools_pages(port: int) -> list[dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/json/list")
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200:
        return []
    return [target for target in json.loads(body) if target["type"] == "page"]


@contextlib.contextmanager
def chromium(tmp: Path, width: int = 1280, height: int = 920) -> Iterator[str]:
    """Headless Chromium with the DevTools protocol on loopback; yields its page's WebSocket URL."""
    binary = chromium_binary()
    if binary is None:
        raise RuntimeError("chromium not found: apt-get install -y chromium")
    port = free_port("127.0.0.1")
    process = subprocess.Popen(
        [
            binary,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            f"--remote-debugging-port={port}",
            "--remote-debugging-address=127.0.0.1",
            f"--user-data-dir={tmp / 'chromium'}",
            f"--window-size={width},{height}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with contextlib.suppress(OSError):
                pages = _devtools_pages(port)
                if pages:
                    yield pages[0]["webSocketDebuggerUrl"]
                    return
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("chromium did not open its DevTools endpoint")
            time.sleep(0.2)  # another process is starting: nothing to wait on but time
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class DevTools:
    """One page's DevTools session: commands, and the events received meanwhile."""

    def __init__(self, ws: Any, timeout: float) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, ws_url: str, timeout: float = 30.0) -> AsyncIterator[DevTools]:
        async with websockets.connect(ws_url, max_size=None) as ws:
            yield cls(ws, timeout)

    async def _receive(self) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(self._ws.recv(), self.timeout))
        if "method" in message:
            self.events.append(message)
        return message

    async def call(self, method: str, **params: Any) -> Any:
        message_id = next(self._ids)
        await self._ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            answer = await self._receive()
            if answer.get("id") == message_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})

    async def wait_for(self, method: str, after: int = 0) -> dict[str, Any]:
        """The first ``method`` event at index ``after`` or later in ``events``, waiting for it."""
        index = after
        while True:
            for event in self.events[index:]:
                if event["method"] == method:
                    return event
            index = len(self.events)
            await self._receive()

    async def navigate(self, url: str) -> None:
        mark = len(self.events)
        await self.call("Page.navigate", url=url)
        await self.wait_for("Page.loadEventFired", after=mark)

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def requested_urls(self) -> list[str]:
        return [
            event["params"]["request"]["url"]
            for event in self.events
            if event["method"] == "Network.requestWillBeSent"
        ]
