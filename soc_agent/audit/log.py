"""The append-only audit log in SQLite, hash-chained (see `chain`).

It shares the store's database file and touches only the `audit_log` table.
Appends are committed in groups: entries appended while a batch is being
written wait and go in together with the next batch, one transaction and one
fsync for all of them, each caller returning once its own entry is durable.
The chain is the same as one entry at a time (each entry is sealed over the
one before it, in the order appended). Writes are serialised three ways: an
asyncio lock (one batch in flight per log), a thread lock around the one
writer connection (safe even when an awaiting task is cancelled while its
thread still runs), and `BEGIN IMMEDIATE`, which makes SQLite hand the write
lock to one connection at a time, so two processes appending to the same file
cannot fork the chain. Triggers reject UPDATE and
DELETE on the table: defence in depth, not the proof; the chain is the proof.
All SQLite work runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from soc_agent.audit.base import Later
from soc_agent.audit.chain import GENESIS, VerifyResult, format_at, seal, verify_events
from soc_agent.errors import StoreError
from soc_agent.models import AuditEvent
from soc_agent.sqlite_setup import WAL_AUTOCHECKPOINT_PAGES, connect_private, retry_while_busy

__all__ = ["SQLiteAuditLog"]

_BUSY_TIMEOUT_SECONDS = 30.0

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS audit_log (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        reason TEXT NOT NULL,
        outcome TEXT NOT NULL,
        evidence_ref TEXT,
        details TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS audit_log_subject ON audit_log (subject, seq)",
    "CREATE INDEX IF NOT EXISTS audit_log_action ON audit_log (action, seq)",
    """
    CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE is not allowed'); END
    """,
    """
    CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE is not allowed'); END
    """,
)

_COLUMNS = (
    "seq, at, actor, action, subject, reason, outcome, evidence_ref, details, prev_hash, hash"
)


_INSERT = f"INSERT INTO audit_log ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608


class _Unreadable(Exception):
    """A stored row that no longer decodes into an AuditEvent."""

    def __init__(self, seq: int | None, reason: str) -> None:
        self.seq, self.reason = seq, reason
        super().__init__(f"audit entry {seq} is unreadable: {reason}")


class SQLiteAuditLog:
    """Hash-chained, append-only audit log in one SQLite file.

    Opening creates the table, its indexes and triggers if needed (a short,
    blocking step meant for start-up). `key` turns the entry hashes into
    HMAC-SHA256: keep it outside the database.
    """

    def __init__(self, path: str | Path, *, key: bytes | None = None) -> None:
        self._path = Path(path)
        self._key = key
        self._async_lock = asyncio.Lock()
        self._thread_lock = threading.Lock()
        self._waiting: builtins.list[tuple[AuditEvent, asyncio.Future[AuditEvent]]] = []
        self._transactions = 0
        conn = self._connect()
        self._conn: sqlite3.Connection | None = conn
        try:
            retry_while_busy(lambda: self._prepare(conn))
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"{self._path}: cannot prepare the audit log: {exc}") from exc

    @property
    def path(self) -> Path:
        return self._path

    @property
    def transactions(self) -> int:
        """Write transactions committed so far by this log (a batch is one)."""
        return self._transactions

    async def append(self, event: AuditEvent) -> AuditEvent:
        """Append as the next entry; returns it with `seq`, `prev_hash` and `hash` set.

        Any `seq`/`prev_hash`/`hash` already on `event` are ignored. The stored
        time is UTC and `details` are stored as JSON; the returned event shows
        both as stored. Raises ValueError for details JSON cannot hold (NaN);
        the other entries of its batch are written.
        """
        mine: asyncio.Future[AuditEvent] = asyncio.get_running_loop().create_future()
        self._waiting.append((event, mine))
        await self._drain(mine)
        return await mine

    def append_later(self, event: AuditEvent) -> Later:
        """Queue as the next entry, written with the next batch (see `Later`)."""
        mine: asyncio.Future[AuditEvent] = asyncio.get_running_loop().create_future()
        self._waiting.append((event, mine))
        return Later(mine, self._drain)

    async def _drain(self, mine: asyncio.Future[Any]) -> None:
        async with self._async_lock:
            if not mine.done():  # nobody took it into a batch yet: write all that wait
                batch, self._waiting = self._waiting, []
                # Shielded: cancelling this caller must not leave the others unanswered.
                await asyncio.shield(asyncio.ensure_future(self._write(batch)))

    async def _write(
        self, batch: builtins.list[tuple[AuditEvent, asyncio.Future[AuditEvent]]]
    ) -> None:
        try:
            results = await asyncio.to_thread(self._append_sync, [e for e, _ in batch])
        except BaseException as exc:
            for _, waiter in batch:
                if not waiter.done():
                    waiter.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, waiter), result in zip(batch, results, strict=True):
            if waiter.done():
                continue  # its caller was cancelled; the entry is written all the same
            if isinstance(result, BaseException):
                waiter.set_exception(result)
            else:
                waiter.set_result(result)

    async def list(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        subject: str | None = None,
        action_prefix: str | None = None,
        newest_first: bool = False,
    ) -> list[AuditEvent]:
        """Entries in seq order (oldest first unless `newest_first`), optionally filtered."""
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must be >= 0")
        where: list[str] = []
        params: list[Any] = []
        if subject is not None:
            where.append("subject = ?")
            params.append(subject)
        if action_prefix:
            # substr, not LIKE: LIKE is case-insensitive and treats % and _ as wildcards.
            where.append("substr(action, 1, ?) = ?")
            params.extend([len(action_prefix), action_prefix])
        sql = f"SELECT {_COLUMNS} FROM audit_log"  # noqa: S608 - only fixed fragments
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY seq {'DESC' if newest_first else 'ASC'} LIMIT ? OFFSET ?"
        params.extend([limit, offset])
        return await asyncio.to_thread(self._list_sync, sql, params)

    async def entries_after(self, seq: int, *, limit: int) -> builtins.list[AuditEvent]:
        """Up to `limit` entries with a sequence number above `seq`, in chain order."""
        sql = f"SELECT {_COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?"  # noqa: S608
        return await asyncio.to_thread(self._list_sync, sql, [seq, limit])

    async def head(self) -> tuple[int, str]:
        """`(seq, hash)` of the last entry, or `(0, GENESIS)` when empty: an anchor to keep."""
        return await asyncio.to_thread(self._head_sync)

    async def verify(
        self,
        *,
        expected_head: str | None = None,
        expected_count: int | None = None,
        anchors: Mapping[int, str] | None = None,
        since: VerifyResult | None = None,
    ) -> VerifyResult:
        """Verify the chain (after `since`, if given), streaming rows in seq order.

        See `verify_events` for the arguments.
        """
        return await asyncio.to_thread(
            self._verify_sync, expected_head, expected_count, anchors, since
        )

    def close(self) -> None:
        """Close the writer connection (waits for an append in flight). Idempotent."""
        with self._thread_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- worker-thread side -------------------------------------------------------

    @staticmethod
    def _prepare(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _connect(self) -> sqlite3.Connection:
        try:
            return connect_private(self._path, timeout=_BUSY_TIMEOUT_SECONDS)
        except sqlite3.Error as exc:
            raise StoreError(f"{self._path}: cannot open the audit log: {exc}") from exc

    def _append_sync(
        self, events: builtins.list[AuditEvent]
    ) -> builtins.list[AuditEvent | ValueError]:
        """Seal and insert the events in order, in one transaction; an event whose details
        cannot be stored gets its ValueError and takes no place in the chain."""
        with self._thread_lock:
            conn = self._conn
            if conn is None:
                raise StoreError(f"{self._path}: the audit log is closed")
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"{self._path}: cannot lock the audit log: {exc}") from exc
            out: builtins.list[AuditEvent | ValueError] = []
            try:
                row = conn.execute(
                    "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
                ).fetchone()
                seq, prev_hash = (int(row[0]) + 1, str(row[1])) if row else (1, GENESIS)
                for event in events:
                    try:
                        sealed = seal(event, seq=seq, prev_hash=prev_hash, key=self._key)
                        values = _to_row(sealed)
                    except ValueError as exc:
                        out.append(exc)
                        continue
                    conn.execute(_INSERT, values)
                    out.append(sealed)
                    seq, prev_hash = seq + 1, sealed.hash or ""
                conn.execute("COMMIT")
                self._transactions += 1
            except BaseException as exc:
                conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"{self._path}: audit append failed: {exc}") from exc
                raise
            return out

    def _read(self) -> sqlite3.Connection:
        # A connection per read: WAL lets readers run beside the writer, and a
        # long verification holds no lock an append needs.
        return self._connect()

    def _list_sync(self, sql: str, params: builtins.list[Any]) -> builtins.list[AuditEvent]:
        conn = self._read()
        try:
            return [_from_row(row) for row in conn.execute(sql, params)]
        except _Unreadable as exc:
            raise StoreError(f"{self._path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"{self._path}: cannot read the audit log: {exc}") from exc
        finally:
            conn.close()

    def _head_sync(self) -> tuple[int, str]:
        conn = self._read()
        try:
            row = conn.execute(
                "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
            ).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"{self._path}: cannot read the audit log: {exc}") from exc
        finally:
            conn.close()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def _verify_sync(
        self,
        expected_head: str | None,
        expected_count: int | None,
        anchors: Mapping[int, str] | None,
        since: VerifyResult | None,
    ) -> VerifyResult:
        conn = self._read()
        unreadable: list[_Unreadable] = []
        try:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq",  # noqa: S608
                (since.count if since is not None else 0,),
            )
            result = verify_events(
                _decode(rows, unreadable),
                key=self._key,
                expected_head=expected_head,
                expected_count=expected_count,
                anchors=anchors,
                since=since,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"{self._path}: cannot read the audit log: {exc}") from exc
        finally:
            conn.close()
        if unreadable:
            # verify_events consumed every row before it: they were all good.
            bad = unreadable[0]
            return VerifyResult(
                False,
                result.count,
                result.head,
                bad.seq,
                f"entry {bad.seq} is unreadable "
                f"({bad.reason}): it was altered outside the audit log",
            )
        return result


def _to_row(event: AuditEvent) -> tuple[Any, ...]:
    details = json.dumps(
        event.details, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return (
        event.seq,
        format_at(event.at),
        event.actor,
        event.action,
        event.subject,
        event.reason,
        event.outcome,
        event.evidence_ref,
        details,
        event.prev_hash,
        event.hash,
    )


def _from_row(row: tuple[Any, ...]) -> AuditEvent:
    seq = row[0] if isinstance(row[0], int) else None
    try:
        details = json.loads(row[8])
        if not isinstance(details, dict):
            raise _Unreadable(seq, "details is not a JSON object")
        at = datetime.fromisoformat(row[1])
        return AuditEvent(
            seq=row[0],
            at=at,
            actor=row[2],
            action=row[3],
            subject=row[4],
            reason=row[5],
            outcome=row[6],
            evidence_ref=row[7],
            details=details,
            prev_hash=row[9],
            hash=row[10],
        )
    except (TypeError, ValueError, ValidationError) as exc:
        # ValidationError is a ValueError; named for the reader.
        raise _Unreadable(seq, str(exc).splitlines()[0]) from exc


def _decode(rows: Iterable[tuple[Any, ...]], unreadable: list[_Unreadable]) -> Iterator[AuditEvent]:
    """Rows as events; stops at the first unreadable row and records it."""
    for row in rows:
        try:
            yield _from_row(row)
        except _Unreadable as exc:
            unreadable.append(exc)
            return
