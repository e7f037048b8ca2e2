"""The docs site builds in strict mode: no broken link, anchor or API reference."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_docs_build_in_strict_mode(tmp_path: Path) -> None:
    """``mkdocs build --strict`` succeeds: every link, anchor and ``:::`` reference resolves."""
    if sys.version_info < (3, 11):  # what mkdocstrings-python 2 needs
        pytest.skip("the docs tools need Python 3.11+")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr[-4000:]
    assert (tmp_path / "site" / "reference" / "api" / "index.html").is_file()
