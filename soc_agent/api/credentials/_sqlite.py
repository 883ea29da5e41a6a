"""A SQLite connection owned by one worker thread, for the API's own small tables.

With `store_backend: sqlite` the API keeps its credentials (token hashes, web
sessions) in the store file, in tables of its own; the event loop never blocks
on them.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from soc_agent.errors import StoreError
from soc_agent.sqlite_setup import connect_private

__all__ = ["ThreadedSQLite"]

_T = TypeVar("_T")


class ThreadedSQLite:
    def __init__(self, path: str | Path, schema: str, *, name: str) -> None:
        self.path = Path(path)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._pool.submit(self._open, schema).result()
        except (sqlite3.Error, OSError) as exc:
            self._pool.shutdown()
            raise StoreError(f"cannot open {self.path}: {exc}") from None

    def _open(self, schema: str) -> sqlite3.Connection:
        db = connect_private(self.path, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=30000")
        db.executescript(schema)
        return db

    async def run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `fn` on the connection's own thread."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, fn, self._db)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    def close(self) -> None:
        self._pool.submit(self._db.close).result()
        self._pool.shutdown()
