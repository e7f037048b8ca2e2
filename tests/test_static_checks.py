"""ruff and mypy stay clean: run as part of the suite so CI enforces them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"{name} is not installed; install the test extra: pip install -e '.[test]'")
    return found


def test_ruff_is_clean() -> None:
    """`ruff check` reports nothing on the package, tests, benchmarks, examples and the docs' scripts."""
    result = subprocess.run(
        [_tool("ruff"), "check", "otel_user_tracking", "tests", "benchmarks", "examples", "scripts", "docs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    """`mypy` (strict, configured in pyproject.toml) reports nothing on the package."""
    result = subprocess.run(
        [_tool("mypy"), "otel_user_tracking"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
