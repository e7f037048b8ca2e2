"""The report on a terminal: stored text cannot drive it, and a reader that stops early ends it quietly."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from ._cli import report
from ._dashboard import NOW, event, fill

HOSTILE = {
    "title": "\x1b]0;pwned\x07",
    "clipboard": "\x1b]52;c;cm0gLXJmIH4=\x1b\\",
    "clear": "\x1b[2J\x1b[H",
    "csi8": "\x9b31m",
    "bidi": "\u202eexe.txt",
    "isolate": "\u2066x\u2069\u200e\u200f\u061c",
    "controls": "a\x00b\x7fc\rd\x08e\u2028f",
}
HOSTILE_TEXT = "".join(HOSTILE.values())
# What a terminal acts on: C0 (but the report's own newlines), DEL, C1, separators, bidi controls.
CONTROLS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store whose every text the report prints holds terminal escapes and bidi controls."""
    when = NOW - timedelta(hours=1)
    text = {
        "route": f"/{HOSTILE_TEXT}",
        "referrer": f"https://x.example/{HOSTILE_TEXT}",
        "locale": HOSTILE_TEXT,
        "utm_source": HOSTILE_TEXT,
        "visitor_id": "v1",
    }
    return fill(
        tmp_path_factory.mktemp("hostile") / "a.db",
        [
            event("pageview", when, 1, **text),
            event("error", when, 2, error_type=HOSTILE_TEXT, error_message=HOSTILE_TEXT, **text),
            event("custom", when, 3, name=HOSTILE_TEXT, **text),
        ],
    )


def _report(database: Path, *options: str) -> str:
    return report(database, "--since", "2000-01-01", *options)


def test_the_table_shows_terminal_controls_as_escapes(hostile_store: Path) -> None:
    """ESC, OSC, BEL, C0/C1 controls and bidi overrides in pages, referrers, locales, UTM values, error
    types and messages and event names reach the terminal as visible escapes, never raw."""
    printed = _report(hostile_store)
    assert CONTROLS.findall(printed) == []
    assert printed.count("\\x1b]0;pwned\\x07") >= 5 and printed.count("\\u202eexe.txt") >= 5
    assert "\\x9b31m" in printed and "\\u2066x\\u2069\\u200e\\u200f\\u061c" in printed


def test_the_json_keeps_the_values_and_escapes_the_controls(hostile_store: Path) -> None:
    """``--format json`` holds the stored strings exactly, every control among them written as an escape."""
    printed = _report(hostile_store, "--format", "json")
    assert CONTROLS.findall(printed) == []
    report = json.loads(printed)
    assert report["error_types"][0]["last_message"] == HOSTILE_TEXT
    assert report["custom"] == [{"value": HOSTILE_TEXT, "count": 1}]
    assert report["routes"][0]["page"] == f"/{HOSTILE_TEXT}"


@pytest.mark.parametrize("output", ["table", "json"])
def test_a_reader_that_stops_reading_ends_the_report_quietly(hostile_store: Path, output: str) -> None:
    """``report ... | head`` ends without a traceback, with the status of a process SIGPIPE ended."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the report writes: every write meets EPIPE
    try:
        done = subprocess.run(
            [sys.executable, "-m", "otel_user_tracking", "report", str(hostile_store), "--format", output],
            stdout=write,
            stderr=subprocess.PIPE,
            timeout=60,
        )
    finally:
        os.close(write)
    assert done.stderr == b"" and done.returncode == 141
