"""A small tmpfs mounted for a test, to fill up or remount read-only (needs root; skips otherwise)."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def mounted_tmpfs(mount: Path, size: str = "2m") -> Iterator[Path]:
    """Mount a tmpfs of ``size`` at ``mount`` for the duration (skip where mounting is refused)."""
    mount.mkdir()
    try:
        command = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)]
        done = subprocess.run(command, capture_output=True, timeout=10)
        refused = done.stderr.decode().strip() if done.returncode != 0 else ""
    except OSError as exc:  # no mount command
        refused = str(exc)
    if refused:
        pytest.skip(f"cannot mount a tmpfs here (needs root and mount rights): {refused}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=10)


def fill(mount: Path) -> Path:
    """Write a file until the file system is full; delete it to free the space again."""
    filler = mount / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler
