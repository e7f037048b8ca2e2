"""The visitor-id day salts in the embedded store: one row per UTC day, deleted once it is over.

Every process writing the store (``uvicorn --workers N``, restarts, gunicorn's workers) takes
a day's salt from the ``visitor_salts`` row of that day, inserted by whichever came first
(``INSERT OR IGNORE``): they all give a visitor the same id. Rows of days before today are
deleted with ``secure_delete`` (their bytes zeroed in the page) and the WAL is checkpointed
and truncated, so no copy of a past day's salt stays in either file.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Union

from ...salts.base import new_salt
from .schema import SALTS, connect


class SQLiteDaySalts:
    """The ``DaySaltStore`` of one store file; a connection per call (a few calls a day).

    Args:
        path: The store's file.
        timeout: Seconds a call waits for another process's write transaction.
    """

    def __init__(self, path: Union[str, Path], *, timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._unwiped = False  # deleted rows may still be in the WAL: truncate it at the next call

    def salts(self, days: Sequence[int]) -> Mapping[int, bytes]:
        with contextlib.closing(self._connect()) as db:
            found = self._select(db, days)
            missing = [day for day in days if day not in found]
            if missing:
                with _transaction(db):
                    db.executemany(
                        f"INSERT OR IGNORE INTO {SALTS} (day, salt) VALUES (?, ?)",
                        [(day, new_salt()) for day in missing],
                    )
                found.update(self._select(db, missing))
        return found

    def forget_before(self, day: int) -> bool:
        with contextlib.closing(self._connect()) as db:
            deleted = db.execute(f"DELETE FROM {SALTS} WHERE day < ?", (day,)).rowcount
            if deleted or self._unwiped:
                # Copy the zeroed pages into the file and empty the WAL, which held the rows too.
                busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                self._unwiped = bool(busy)
        return not self._unwiped

    def close(self) -> None:
        return None

    def _connect(self) -> sqlite3.Connection:
        db = connect(self.path, timeout=self.timeout)
        db.execute("PRAGMA secure_delete=ON")
        return db

    @staticmethod
    def _select(db: sqlite3.Connection, days: Sequence[int]) -> dict[int, bytes]:
        marks = ", ".join("?" * len(days))
        rows = db.execute(f"SELECT day, salt FROM {SALTS} WHERE day IN ({marks})", tuple(days))
        return {int(day): bytes(salt) for day, salt in rows}


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
