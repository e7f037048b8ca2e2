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


def test_the_readme_set_up_commands_are_what_ci_and_the_demo_test_run() -> None:
    """The README's two commands: the demo one runs examples/run_demo.sh (tests/test_examples.py
    runs that script), and the suite one is the line .ci/run runs."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    venv = "python3 -m venv .venv && . .venv/bin/activate && pip install -U pip && "
    suite = venv + 'pip install -e ".[test]" && python -m pytest'
    demo = venv + 'pip install -e ".[examples]" && bash examples/run_demo.sh'
    assert suite in readme.splitlines() and suite in ci.splitlines()
    assert demo in readme.splitlines()
