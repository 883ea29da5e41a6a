"""Publishes the audit chain to the audit topic, in chain order, at least once.

Every component appends to the one hash-chained log in the store; this
exporter copies entries with a higher `seq` than its cursor to the topic and
moves the cursor only after the broker acknowledged them. The cursor is a
row in the store's database (table `kafka_exports`, owned by this module), so
the worker processes sharing a store share it, and a file lock lets one of
them export at a time. A worker calls `export()` before committing offsets:
when it returns, every entry appended before the call is on the topic.
"""

from __future__ import annotations

import asyncio
import sqlite3

from soc_agent.audit import SQLiteAuditLog
from soc_agent.runtime.kafka.locks import FileLock
from soc_agent.runtime.kafka.producer import Publisher
from soc_agent.runtime.kafka.records import audit_record

__all__ = ["AuditExporter"]

_BATCH = 1000
_SCHEMA = "CREATE TABLE IF NOT EXISTS kafka_exports (name TEXT PRIMARY KEY, position INTEGER)"


class AuditExporter:
    def __init__(
        self, audit: SQLiteAuditLog, publisher: Publisher, topic: str, *, lock: FileLock
    ) -> None:
        self._audit = audit
        self._publisher = publisher
        self._topic = topic
        self._lock = lock
        self._name = f"audit->{topic}"
        self.exported = 0

    def _db(self) -> sqlite3.Connection:
        db = sqlite3.connect(self._audit.path, timeout=30, isolation_level=None)
        db.execute(_SCHEMA)
        return db

    def _cursor_sync(self) -> int:
        db = self._db()
        try:
            row = db.execute(
                "SELECT position FROM kafka_exports WHERE name=?", (self._name,)
            ).fetchone()
            return int(row[0]) if row else 0
        finally:
            db.close()

    def _advance_sync(self, position: int) -> None:
        db = self._db()
        try:
            db.execute(
                "INSERT INTO kafka_exports VALUES (?,?) ON CONFLICT(name) DO UPDATE SET "
                "position=max(position, excluded.position)",
                (self._name, position),
            )
        finally:
            db.close()

    async def export(self) -> int:
        """Publish every entry past the cursor; returns how many this call published."""
        sent = 0
        async with self._lock.hold():
            cursor = await asyncio.to_thread(self._cursor_sync)
            while True:
                # seq is 1, 2, 3, ... so the entries after `cursor` start at row `cursor`.
                events = await self._audit.list(limit=_BATCH, offset=cursor)
                if not events:
                    break
                await self._publisher.send_all(audit_record(self._topic, e) for e in events)
                last = events[-1].seq
                cursor = int(last) if last is not None else cursor + len(events)
                await asyncio.to_thread(self._advance_sync, cursor)
                sent += len(events)
        self.exported += sent
        return sent
