"""Take docs/jaeger-user-trace.png: the Jaeger UI showing a demo request with its user.* tags.

Runs what tests/test_collector_e2e.py runs (Jaeger v2 and the Collector from
``collector-config/build.sh``, the example app under ``opentelemetry-instrument``, the demo
traffic), then drives headless Chromium (Debian's ``chromium``) over the DevTools protocol:
open Jane's ``POST /checkout`` trace, expand its server span's tags, scroll the tag table
to the user.* rows, capture the page::

    apt-get install -y chromium
    python docs/jaeger_screenshot.py --ui-assets /path/to/jaeger-ui/packages/jaeger-ui/build

A Jaeger built from its Go module embeds only a placeholder page instead of the UI; the
Docker image embeds the real one. ``--ui-assets`` (``JAEGER_UI_ASSETS`` in
collector-config/jaeger.yaml) serves a built jaeger-ui instead: the one matching Jaeger
v1.76.0 is jaeger-ui v1.76.0, built with ``npm ci && npm run build`` (Node >= 20.19).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests._chromium import chromium  # noqa: E402
from tests._jaeger import GoProcess, JaegerQuery, require_binaries, serve_demo, server_spans, tags  # noqa: E402

OUTPUT = ROOT / "docs" / "jaeger-user-trace.png"
SERVICE = "demo-shop"
USER_ID = "user-42"
ROUTE = "POST /checkout"
WIDTH, HEIGHT = 1280, 920
PAGE_TIMEOUT = 30.0

# Click the server span's row, then the "Tags" header of its detail (jaeger-ui v1.76 markup).
EXPAND_TAGS = """(() => {
  const row = [...document.querySelectorAll('.span-name-wrapper')].find(e => e.textContent.includes('%s'));
  if (!row) return 'no-row';
  const tags = [...document.querySelectorAll('.AccordianKeyValues--header')]
    .find(e => e.textContent.startsWith('Tags'));
  if (!tags) { row.querySelector('a.span-name').click(); return 'row'; }
  if (!document.querySelector('.KeyValueTable')) { tags.click(); return 'tags'; }
  // The tag table scrolls inside a fixed height: bring the user.* rows (last) into view.
  const rows = [...document.querySelectorAll('.KeyValueTable tr')];
  const user = rows.find(r => r.textContent.startsWith('user.roles'));
  if (!user) return 'no-user-tags';
  user.scrollIntoView({block: 'end'});
  window.scrollTo(0, 0);
  return 'done';
})()"""


def run_demo(tmp: Path, jaeger: GoProcess, otelcol_bin: Path) -> str:
    """The Collector and the demo app in front of a running ``jaeger``; returns Jane's trace id."""
    env = {
        "OTELCOL_JAEGER_ENDPOINT": jaeger.endpoint("JAEGER_OTLP_GRPC_ENDPOINT"),
        "OTELCOL_ANALYTICS_FILE": str(tmp / "analytics.jsonl"),
    }
    with GoProcess.collector(otelcol_bin, tmp, "otelcol.yaml", env) as collector:
        serve_demo(collector, SERVICE, f"otlp,sqlite:///{tmp / 'demo.db'}", tmp)
    query = JaegerQuery(f"http://{jaeger.endpoint('JAEGER_QUERY_HTTP_ENDPOINT')}")
    query.wait_for_traces(SERVICE, 15)
    for trace in query.traces(SERVICE, tags={"user.id": USER_ID}):
        if any(span["operationName"] == ROUTE for span in server_spans(trace)):
            assert all(tags(span).get("user.id") == USER_ID for span in server_spans(trace))
            return str(trace["traceID"])
    raise RuntimeError(f"no {ROUTE} trace for {USER_ID} in Jaeger")


async def capture(ws_url: str, url: str, route: str) -> bytes:
    async with websockets.connect(ws_url, max_size=None) as ws:
        ids = iter(range(1, 1_000_000))

        async def call(method: str, **params: Any) -> Any:
            message_id = next(ids)
            await ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
            while True:
                answer = json.loads(await ws.recv())
                if answer.get("id") == message_id:
                    return answer.get("result", {})

        await call(
            "Emulation.setDeviceMetricsOverride",
            width=WIDTH,
            height=HEIGHT,
            deviceScaleFactor=1,
            mobile=False,
        )
        await call("Page.navigate", url=url)
        deadline = time.monotonic() + PAGE_TIMEOUT
        state = ""
        while state != "done":
            result = await call("Runtime.evaluate", expression=EXPAND_TAGS % route, returnByValue=True)
            state = result.get("result", {}).get("value", "")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the trace page never showed the span's tags (last step: {state})")
            await asyncio.sleep(0.3)  # the page renders on its own schedule
        await asyncio.sleep(0.5)
        shot = await call("Page.captureScreenshot", format="png")
        return base64.b64decode(shot["data"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ui-assets", required=True, help="a built jaeger-ui (its build/ folder)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    jaeger_bin, otelcol_bin = require_binaries()
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        jaeger = GoProcess.jaeger(jaeger_bin, tmp)
        jaeger.env["JAEGER_UI_ASSETS"] = str(Path(args.ui_assets).resolve())
        with jaeger:
            trace_id = run_demo(tmp, jaeger, otelcol_bin)
            url = f"http://{jaeger.endpoint('JAEGER_QUERY_HTTP_ENDPOINT')}/trace/{trace_id}"
            with chromium(tmp, WIDTH, HEIGHT) as ws_url:
                png = asyncio.run(capture(ws_url, url, ROUTE))
    args.output.write_bytes(png)
    print(f"wrote {args.output} ({len(png)} bytes): trace {trace_id}")


if __name__ == "__main__":
    main()
