"""The package's command line, run in a subprocess as a user would run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def report(database: Path, *options: str, timeout: float = 60) -> str:
    """``python -m otel_user_tracking report DATABASE OPTIONS...``: what it prints (it must succeed)."""
    done = subprocess.run(
        [sys.executable, "-m", "otel_user_tracking", "report", str(database), *options],
        capture_output=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.decode("utf-8")


def report_json(database: Path, *options: str, timeout: float = 60) -> Any:
    """``python -m otel_user_tracking report DATABASE --format json OPTIONS...``: the parsed report."""
    return json.loads(report(database, "--format", "json", *options, timeout=timeout))
