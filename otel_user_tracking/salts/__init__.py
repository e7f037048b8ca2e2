"""Where the daily salt of the cookieless visitor id comes from (``SaltSource``)."""

from __future__ import annotations

from .base import DaySaltStore, SaltKeeper, SaltSource, day_of, new_salt
from .memory import RandomSalts
from .secret import VISITOR_SECRET_ENV, SecretSalts
from .stored import StoredSalts

__all__ = [
    "VISITOR_SECRET_ENV",
    "DaySaltStore",
    "RandomSalts",
    "SaltKeeper",
    "SaltSource",
    "SecretSalts",
    "StoredSalts",
    "day_of",
    "new_salt",
]
