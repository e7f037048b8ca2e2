"""Another process for a test to hold a file with: started, read its first line, ended with the block."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

HOLD_LOCK = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
"""


@contextlib.contextmanager
def helper_process(command: list[str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Run ``command`` until the block ends (its stdin closes); yields it and its first line."""
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdin is not None
    try:
        yield process, process.stdout.readline().strip()
    finally:
        with contextlib.suppress(OSError):
            process.stdin.close()
        if process.wait(10) is None:
            process.kill()
        process.stdout.close()


def holding_lock(path: str) -> contextlib.AbstractContextManager[tuple[subprocess.Popen[str], str]]:
    """Another process holding ``BEGIN IMMEDIATE`` on the SQLite file at ``path`` until the block ends."""
    return helper_process([sys.executable, "-c", HOLD_LOCK, path])
