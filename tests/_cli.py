"""The package's command line, run in a subprocess as a user would run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def report_json(database: Path, *, timeout: float = 60) -> Any:
    """``python -m otel_user_tracking report DATABASE --format json``: the parsed report."""
    done = subprocess.run(
        [sys.executable, "-m", "otel_user_tracking", "report", str(database), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
