"""A process producing analytics through a durable processor, commanded over stdin, for fault tests.

``python -m tests._durable_producer OUTBOX BASE_URL``: two webhooks on one host (``/a`` with
``Bearer token-a``, ``/b`` with ``Bearer token-b``) share the outbox, and an in-memory sink
records every event produced. One JSON command a line, one JSON answer a line:
``{"produce": n}`` ends n request spans; ``{"flush": ms}`` answers ``{"flushed": bool}``;
``{"stats": 1}`` the counters per sink; ``{"ids": 1}`` the ids of the events produced so far;
``{"exit": 1}`` shuts the processor down (stats and ids).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

from opentelemetry.sdk.trace import TracerProvider

import otel_user_tracking as out
from otel_user_tracking.sinks import InMemorySink
from otel_user_tracking.sinks.webhook import WebhookSink

from ._sinks import end_request_spans

SETTINGS = {"flush_at": 10, "flush_interval": 0.1, "initial_backoff": 0.05, "max_backoff": 0.5}


def main(outbox: str, base_url: str) -> None:
    memory = InMemorySink()
    sinks = [
        WebhookSink(f"{base_url}/a", authorization="Bearer token-a", timeout=2.0),
        WebhookSink(f"{base_url}/b", authorization="Bearer token-b", timeout=2.0),
        memory,
    ]
    provider = TracerProvider()
    processor = out.AnalyticsSpanProcessor(sinks=sinks, durable=outbox, **SETTINGS)
    provider.add_span_processor(processor)

    def stats() -> dict[str, Any]:
        return {name: dataclasses.asdict(entry) for name, entry in processor.stats().items()}

    def ids() -> list[str]:
        return [event.event_id for event in memory.events]

    answer(ready=True)
    for line in sys.stdin:
        command = json.loads(line)
        if "produce" in command:
            end_request_spans(provider, int(command["produce"]))
            answer(produced=int(command["produce"]))
        elif "flush" in command:
            answer(flushed=processor.force_flush(int(command["flush"])))
        elif "stats" in command:
            answer(stats=stats())
        elif "ids" in command:
            processor.force_flush(100)
            answer(ids=ids())
        elif "exit" in command:
            provider.shutdown()
            answer(stats=stats(), ids=ids())
            return


def answer(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
