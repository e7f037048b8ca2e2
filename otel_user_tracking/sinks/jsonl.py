"""JSONLinesSink: append events to a file, one JSON object per line, for users' own pipelines."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Union

from ..analytics.events import AnalyticsEvent
from ..analytics.sink import RetryableSinkError
from ..sink_urls import SinkURL


class JSONLinesSink:
    """Append each batch to ``path`` and fsync it, so a delivered batch survives a crash."""

    max_batch_size = 1000
    remote = False  # a local file: durable as it is, no outbox

    def __init__(self, path: Union[str, Path]) -> None:
        self.path = Path(path)
        self.name = f"jsonl({self.path})"
        self._lock = threading.Lock()

    def send(self, batch: Sequence[AnalyticsEvent]) -> None:
        text = "".join(
            json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=False) + "\n" for event in batch
        )
        with self._lock:
            try:
                if self.path.parent != Path(""):
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as file:
                    file.write(text)
                    file.flush()
                    os.fsync(file.fileno())
            except OSError as exc:
                # A full disk or a missing mount may come back; the pipeline retries.
                raise RetryableSinkError(f"{self.name}: {type(exc).__name__}: {exc.strerror}") from None

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"JSONLinesSink({str(self.path)!r})"


def from_url(parsed: SinkURL) -> JSONLinesSink:
    """``jsonl:///relative.jsonl`` or ``jsonl:////abs/path.jsonl``."""
    path = parsed.path[1:] if parsed.path.startswith("/") else parsed.path
    if parsed.host or not path:
        raise parsed.error("expected a file path and no host")
    return JSONLinesSink(os.path.expanduser(path))
