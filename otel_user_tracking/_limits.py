"""Size caps where values enter: what is cut is counted and logged once per kind, never raised.

An app's exception message, a ``track()`` meta value or a stack trace can be megabytes; left
alone, one of them makes a span, an event and a stored row of that size. Each is cut where
it enters, with a marker saying how much went, and the cut is counted by kind
(``cut_counts()``): a kind is a fixed name (``exception.message``, ``meta.value``), never
the content.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter

MAX_EXCEPTION_TYPE_CHARS = 256
MAX_EXCEPTION_MESSAGE_CHARS = 8 * 1024
MAX_EXCEPTION_STACKTRACE_CHARS = 32 * 1024
MAX_STATUS_DESCRIPTION_CHARS = 1024
MAX_META_KEY_CHARS = 128
MAX_META_VALUE_CHARS = 4 * 1024
MAX_META_TOTAL_CHARS = 32 * 1024
# The longest value a text rule must see whole (user values are at most 1024 characters).
MAX_WORD_CHARS = 1024

_logger = logging.getLogger(__name__)
_lock = threading.Lock()
_counts: Counter[str] = Counter()
_LEADING_TOKEN = re.compile(r"\A\S+")


def note_cut(kind: str, count: int = 1) -> None:
    """Count ``count`` values of ``kind`` cut or dropped; log the first of each kind."""
    with _lock:
        first = kind not in _counts
        _counts[kind] += count
    if first:
        _logger.warning(
            "otel_user_tracking: a value over its size cap (%s) was cut or dropped "
            "(further ones are counted, not logged: otel_user_tracking.cut_counts())",
            kind,
        )


def cut_counts() -> dict[str, int]:
    """Values cut or dropped at a size cap so far, by kind (e.g. ``{"meta.value": 2}``)."""
    with _lock:
        return dict(_counts)


def reset_cut_counts() -> None:
    """Forget the counts and which kinds were logged (``otel_user_tracking.testing.reset``)."""
    with _lock:
        _counts.clear()


def marker(dropped: int) -> str:
    """What replaces the ``dropped`` characters of a cut text."""
    return f"...[{dropped} characters cut]"


def head(text: str, limit: int) -> str:
    """The start of ``text`` (at most ``limit`` characters), without a word cut in two.

    A value that straddles the cut (an email, a name) would leave a fragment no pattern
    recognises any more, so a partial last word of up to ``MAX_WORD_CHARS`` goes whole.
    """
    kept = text[:limit]
    if len(text) > limit and not text[limit].isspace():
        start = len(kept)
        floor = max(0, start - MAX_WORD_CHARS)
        while start > floor and not kept[start - 1].isspace():
            start -= 1
        if start > floor or floor == 0:
            kept = kept[:start]
    return kept


def tail(text: str, limit: int) -> str:
    """The end of ``text`` (at most ``limit`` characters), without a word cut in two."""
    if len(text) <= limit:
        return text
    kept = text[len(text) - limit :]
    if not text[len(text) - limit - 1].isspace():
        word = _LEADING_TOKEN.match(kept)
        if word is not None and len(word.group(0)) <= MAX_WORD_CHARS:
            kept = kept[word.end() :]
    return kept


def cut(text: str, limit: int, kind: str) -> str:
    """``text`` if it fits in ``limit`` characters, else its first ``limit`` and a marker (counted)."""
    if len(text) <= limit:
        return text
    note_cut(kind)
    return text[:limit] + marker(len(text) - limit)
