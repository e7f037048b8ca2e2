"""Day salts derived from a configured secret: the same in every process that has the secret."""

from __future__ import annotations

import hashlib
import hmac
from typing import Optional

from .base import LatestDay

VISITOR_SECRET_ENV = "OTEL_PYTHON_USER_TRACKING_VISITOR_SECRET"
_CONTEXT = b"otel-user-tracking visitor salt v1\x00"


class SecretSalts:
    """The salt of a day is HMAC-SHA256(secret, day): no store, no I/O, one value fleet-wide.

    The trade-off: whoever holds the secret can recompute the salt of any past day and so
    test guessed addresses against that day's stored visitor ids; with a store-kept salt,
    a day's salt is gone once the day is over. Keep the secret like a password.

    Args:
        secret: At least 16 bytes, random (``python -c 'import secrets;
            print(secrets.token_urlsafe(32))'``).
    """

    def __init__(self, secret: bytes) -> None:
        self._key = bytes(secret)
        self._days = LatestDay()
        self._current = (-1, b"")  # (day, salt), replaced whole

    def salt(self, day: int) -> Optional[bytes]:
        day = self._days.see(day)
        current = self._current
        if current[0] != day:
            # Deterministic: threads racing here compute the same salt.
            current = self._current = (day, derive_salt(self._key, day))
        return current[1]

    def start(self) -> None:
        return None

    def close(self) -> None:
        return None


def derive_salt(secret: bytes, day: int) -> bytes:
    """The salt of ``day`` under ``secret``."""
    return hmac.new(secret, _CONTEXT + str(day).encode("ascii"), hashlib.sha256).digest()
