"""Wait, bounded, until a URL answers 200: ``python wait_for.py URL [SECONDS]`` (stdlib only).

The Collector's image has no shell or wget, so Docker cannot health-check it from inside;
whoever needs it ready (the compose demo app, the screenshot script) asks from outside.
"""

from __future__ import annotations

import sys
import time
import urllib.request


def wait_for(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not answer 200 within {timeout:.0f}s")
        time.sleep(0.5)  # another process is starting: nothing to wait on but time


if __name__ == "__main__":
    wait_for(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 60.0)
