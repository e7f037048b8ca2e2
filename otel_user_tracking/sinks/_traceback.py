"""Parse a Python traceback (``exception.stacktrace`` text) back into frames.

Backends that group errors by stack frames (PostHog's ``$exception_list``) need structure,
but a finished span only holds the formatted text; the format is stable enough to parse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

_FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)", line (?P<line>\d+), in (?P<function>.+?)\s*$')
_LIBRARY_MARKERS = ("site-packages", "dist-packages", "/lib/python", "<frozen ")


@dataclass(frozen=True)
class Frame:
    path: str
    lineno: int
    function: str
    context_line: Optional[str]

    @property
    def in_app(self) -> bool:
        """Application code, not the standard library or an installed package."""
        return not any(marker in self.path for marker in _LIBRARY_MARKERS)


def parse_traceback(text: Optional[str]) -> list[Frame]:
    """Frames of the last traceback in ``text``, outermost first (as Python prints them)."""
    if not text:
        return []
    frames: list[Frame] = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            frames = []  # chained exceptions: keep the frames of the one that escaped (the last)
            continue
        match = _FRAME.match(line)
        if not match:
            continue
        following = lines[index + 1] if index + 1 < len(lines) else ""
        code = following.strip() if following.startswith("    ") and not _FRAME.match(following) else None
        frames.append(Frame(match["path"], int(match["line"]), match["function"], code or None))
    return frames
