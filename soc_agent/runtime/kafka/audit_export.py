"""Publishes the audit chain to the audit topic, in chain order, at least once.

Every component appends to the one hash-chained log of the backend; this
exporter copies entries with a higher `seq` than its cursor to the topic and
moves the cursor only after the broker acknowledged them. The cursor is a
store flag (`kafka.export.<topic>`), so every worker sharing the backend
shares it, and the backend's `audit-export` lock lets one of them export at a
time. A worker calls `export()` before committing offsets: when it returns,
every entry appended before the call is on the topic.
"""

from __future__ import annotations

from soc_agent.audit import AuditLog
from soc_agent.runtime.kafka.producer import Publisher
from soc_agent.runtime.kafka.records import audit_record
from soc_agent.store import Store
from soc_agent.store.locks import Lock

__all__ = ["AuditExporter"]

_BATCH = 1000


class AuditExporter:
    """Publishes the audit chain's new entries to the audit topic in order, one worker at once."""

    def __init__(
        self, audit: AuditLog, store: Store, publisher: Publisher, topic: str, *, lock: Lock
    ) -> None:
        self._audit = audit
        self._store = store
        self._publisher = publisher
        self._topic = topic
        self._lock = lock
        self._flag = f"kafka.export.{topic}"
        self.exported = 0

    async def export(self) -> int:
        """Publish every entry past the cursor; returns how many this call published."""
        sent = 0
        async with self._lock.hold():
            cursor = int(await self._store.get_flag(self._flag) or 0)
            while True:
                events = await self._audit.entries_after(cursor, limit=_BATCH)
                if not events:
                    break
                await self._publisher.send_all(audit_record(self._topic, e) for e in events)
                last = events[-1].seq
                cursor = int(last) if last is not None else cursor + len(events)
                await self._store.set_flag(self._flag, cursor)
                sent += len(events)
        self.exported += sent
        return sent
