"""Recognising bots, monitors and scripts by their user agent, so they make no pageviews."""

from __future__ import annotations

from typing import Optional

from ..agents import is_person


def is_bot(user_agent: Optional[str]) -> bool:
    """True for a bot, crawler, monitor or script (curl, python-requests, ...): ``agents.py``.

    People's apps (in-app browsers, desktop apps, mobile apps' HTTP clients) are not bots.
    """
    return not is_person(user_agent)
