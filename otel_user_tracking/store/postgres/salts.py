"""The visitor-id day salts in the PostgreSQL store: one row per UTC day for every process of a fleet.

Every app process of every machine writing the database takes a day's salt from the
``visitor_salts`` row of that day, inserted by whichever came first (``ON CONFLICT (day) DO
NOTHING``), so a visitor has one id a day across the fleet. Rows of past days are deleted;
PostgreSQL leaves the dead row until the table is vacuumed, so the delete is followed by a
``VACUUM`` of that small table (its space is reused; WAL and backups are the operator's to
retire, as for any deleted row).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from ...salts.base import new_salt
from .connection import connect, migrate

SALTS = "visitor_salts"


class PostgresDaySalts:
    """The ``DaySaltStore`` of a PostgreSQL store; a connection per call (a few calls a day).

    Args:
        url: The store's URL (never logged; errors name it masked).
        timeout: Seconds a connection attempt may take.
    """

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self._url = url
        self.timeout = timeout

    def salts(self, days: Sequence[int]) -> Mapping[int, bytes]:
        with contextlib.closing(self._connect()) as db:
            with db.transaction():
                db.cursor().executemany(
                    f"INSERT INTO {SALTS} (day, salt) VALUES (%s, %s) ON CONFLICT (day) DO NOTHING",
                    [(day, new_salt()) for day in days],
                )
            rows = db.execute(f"SELECT day, salt FROM {SALTS} WHERE day = ANY(%s)", (list(days),))
            return {int(day): bytes(salt) for day, salt in rows}

    def forget_before(self, day: int) -> bool:
        with contextlib.closing(self._connect()) as db:
            if db.execute(f"DELETE FROM {SALTS} WHERE day < %s", (day,)).rowcount:
                db.execute(f"VACUUM {SALTS}")
        return True

    def close(self) -> None:
        return None

    def _connect(self) -> Any:
        db = connect(self._url, application_name="otel-user-tracking salts", timeout=self.timeout)
        try:
            migrate(db)
        except BaseException:
            db.close()
            raise
        return db
