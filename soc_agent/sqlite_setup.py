"""Opening SQLite files that several processes may be creating at the same moment.

Stores and audit logs hold what the agent knows about incidents and people: a
new file is created readable by its owner only (0600); SQLite gives the WAL and
shared-memory files the same mode as the database.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

__all__ = ["add_column", "connect_private", "retry_while_busy", "transaction"]

_T = TypeVar("_T")


# Pages the write-ahead log may hold before a commit copies them into the database (SQLite's
# default is 1,000). The pipeline rewrites the same hot pages (incident heads, the tails of
# the indexes and of the audit chain) in commit after commit; a longer log copies each of
# them once per checkpoint instead of once every few dozen alerts. About 40 MB of log at most.
WAL_AUTOCHECKPOINT_PAGES = 10_000


def connect_private(path: str | os.PathLike[str], *, timeout: float) -> sqlite3.Connection:
    """A connection for one thread at a time with explicit transactions, creating a
    missing file with mode 0600 first."""
    if os.fspath(path) != ":memory:":
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError as exc:  # reported as SQLite would, so callers handle one error type
            raise sqlite3.OperationalError(f"unable to open database file: {exc}") from exc
    return sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)


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


def add_column(db: sqlite3.Connection, table: str, column: str, declaration: str) -> None:
    """Add a column a store created before it lacks (SQLite appends it, so row order
    holds); nothing when it is there, also when another process added it first."""
    if column in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
        return
    try:
        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
    except sqlite3.OperationalError as exc:
        if "duplicate column" not in str(exc):
            raise


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: all of the block's writes commit, or none.

    `connect_private` connections are in autocommit mode, where `with db:`
    opens no transaction (each statement commits alone), so this says BEGIN.
    IMMEDIATE takes the write lock at once: a writer never fails half-way on
    another process's lock.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.rollback()
        raise
    db.commit()
