"""Opening SQLite files that several processes may be creating at the same moment."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["retry_while_busy"]

_T = TypeVar("_T")


def retry_while_busy(setup: Callable[[], _T], *, seconds: float = 30.0) -> _T:
    """Run idempotent setup (journal mode, schema), retrying on SQLITE_BUSY.

    Processes opening a new file together (workers starting at once) can get
    "database is locked" from the journal-mode switch without SQLite's busy
    handler being consulted, so the caller's timeout does not cover it.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            return setup()
        except sqlite3.OperationalError as exc:
            busy = "locked" in str(exc) or "busy" in str(exc)
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
