"""Scan every byte a run exported or left behind for values the policy must never let out.

Usage::

    scan = PrivacyScan({"email": "jane@example.com", "address": "198.51.100.77"})
    scan.add("OTLP bodies", *receiver.raw_bodies())
    scan.add_files("store", tmp_path.glob("otel-user-tracking.db*"))
    scan.add("report", report_stdout)
    scan.assert_clean()

A value is looked for case-insensitively in the forms it could take on the way out: as it is,
percent-encoded (a URL, a form body) and HTML-escaped (a page). Each source is recorded with
its size, so a failure says where the value was and the message shows what was scanned
(a scan of empty sources proves nothing: ``assert_clean(min_bytes=...)`` checks that too).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Optional, Union
from urllib.parse import quote

Data = Union[str, bytes]


def forms(value: str) -> set[bytes]:
    """The lower-cased byte forms in which ``value`` could appear in exported data."""
    found = {value, quote(value, safe=""), quote(value, safe="@"), html.escape(value)}
    return {form.lower().encode("utf-8") for form in found}


class PrivacyScan:
    """Collects what left the process and reports each forbidden value found in it.

    Args:
        forbidden: Label -> raw value that must never appear (``{"email": "jane@..."}``).
    """

    def __init__(self, forbidden: Mapping[str, str]) -> None:
        self.forbidden = {label: forms(value) for label, value in forbidden.items()}
        self.sources: dict[str, int] = {}  # where -> bytes scanned
        self.leaks: list[str] = []

    def add(self, where: str, *chunks: Data) -> PrivacyScan:
        """Scan ``chunks`` (text or bytes) as the source ``where``."""
        size = 0
        for chunk in chunks:
            data = chunk.encode("utf-8", "surrogateescape") if isinstance(chunk, str) else bytes(chunk)
            size += len(data)
            self._scan(where, data.lower())
        self.sources[where] = self.sources.get(where, 0) + size
        return self

    def add_files(self, where: str, paths: Iterable[Path]) -> PrivacyScan:
        """Scan the files ``paths`` (those that exist), each named in ``where``."""
        for path in sorted(paths):
            if path.is_file():
                self.add(f"{where} {path.name}", path.read_bytes())
        return self

    def _scan(self, where: str, data: bytes) -> None:
        for label, variants in self.forbidden.items():
            for form in variants:
                at = data.find(form)
                if at >= 0:
                    context = data[max(0, at - 60) : at + len(form) + 60]
                    self.leaks.append(f"{label} in {where}: ...{context!r}...")
                    break

    def assert_clean(self, min_bytes: Optional[Mapping[str, int]] = None) -> None:
        """No forbidden value anywhere; the sources whose names start with a key of
        ``min_bytes`` had at least that many bytes in all."""
        scanned = ", ".join(f"{where} ({size} B)" for where, size in self.sources.items())
        assert not self.leaks, "\n".join(self.leaks) + f"\nscanned: {scanned}"
        for prefix, least in (min_bytes or {}).items():
            size = sum(size for where, size in self.sources.items() if where.startswith(prefix))
            assert size >= least, f"{prefix}: {size} bytes scanned, expected at least {least}; {scanned}"
