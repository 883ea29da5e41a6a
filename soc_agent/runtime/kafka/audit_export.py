"""Publishes the audit chains to the audit topic, each in chain order, at least once.

The exporter copies each chain's entries with a higher `seq` than that
chain's cursor to the topic and moves the cursor only after the broker
acknowledged them. A cursor is a store flag (`kafka.export.<topic>` for the
shared chain, `kafka.export.<topic>@<chain>` for a named one), so every worker
sharing the backend shares it, and a lock per chain (`audit-export`,
`audit-export@<chain>`) lets one of them export that chain at a time.

A worker calls `export()` before committing offsets: when it returns, every
entry it appended before the call is on the topic. It waits for its own
chain's lock only (with the embedded store, or a single shared chain, that is
the one chain); the other chains (the shared one, other machines' chains, those
of processes that stopped) it exports at most every `OTHERS_EVERY_SECONDS`,
skipping any whose lock is taken: someone else is exporting it, and no worker
waits on every other's export.

A worker with a chain of its own (Elasticsearch) holds that chain's lock from
its first export until `aclose()`: nobody else exports the chain meanwhile, so
the entries come from what it appended (kept in memory) and the cursor from
memory, stored at most every `CURSOR_EVERY_SECONDS` and on close. A worker
that dies loses at most that much of its cursor, and whoever exports the chain
next publishes those entries again: at least once, as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from soc_agent.audit import AuditLog
from soc_agent.audit.chains import ChainedAuditLog
from soc_agent.models import AuditEvent
from soc_agent.runtime.kafka.producer import Publisher
from soc_agent.runtime.kafka.records import audit_record
from soc_agent.store import Store
from soc_agent.store.locks import Lock

if TYPE_CHECKING:
    from soc_agent.audit.elasticsearch_log import ElasticsearchAuditLog

__all__ = ["AuditExporter"]

_BATCH = 1000
_LOCK = "audit-export"
OTHERS_EVERY_SECONDS = 5.0
CURSOR_EVERY_SECONDS = 1.0


class AuditExporter:
    """Publishes every chain's new entries to the audit topic in order."""

    def __init__(
        self,
        audit: AuditLog,
        store: Store,
        publisher: Publisher,
        topic: str,
        *,
        locks: Callable[[str], Lock],
    ) -> None:
        self._audit = audit
        self._store = store
        self._publisher = publisher
        self._topic = topic
        self._locks = locks
        self._others_at: float | None = None
        self.exported = 0
        self._own_lock: AsyncExitStack | None = None  # holds the own chain's lock
        self._own_cursor = 0
        self._own_flag = ""
        self._stored: tuple[int, float] = (0, 0.0)  # own cursor last stored, and when

    def export_every_chain_next(self) -> None:
        """Make the next `export()` go through the other chains too (a stopping worker's)."""
        self._others_at = None

    async def export(self) -> int:
        """Publish every entry past the cursors; returns how many this call published."""
        audit = self._audit
        if not isinstance(audit, ChainedAuditLog):
            sent = await self._export(audit, None, wait=True)
        else:
            own = audit.own.chain if audit.own is not None else None
            if audit.own is not None:
                sent = await self._export_own(audit.own)
            else:
                sent = await self._export(audit.shared, None, wait=True)
            now = time.monotonic()
            if self._others_at is None or now - self._others_at >= OTHERS_EVERY_SECONDS:
                self._others_at = now
                for name in {None, *await audit.shared.chains()} - {own}:
                    sent += await self._export(audit.shared.sibling(name), name, wait=False)
        self.exported += sent
        return sent

    async def aclose(self) -> None:
        """Store the own chain's cursor and let its lock go (after the last export)."""
        if self._own_lock is None:
            return
        try:
            await self._store_cursor(force=True)
        finally:
            lock, self._own_lock = self._own_lock, None
            await lock.aclose()

    async def _export_own(self, own: ElasticsearchAuditLog) -> int:
        """What this worker appended to its own chain since the cursor, from memory."""
        if self._own_lock is None:
            lock = AsyncExitStack()
            await lock.enter_async_context(self._locks(f"{_LOCK}@{own.chain}").hold(wait=True))
            self._own_lock = lock
            self._own_flag = self._flag(own.chain)
            self._own_cursor = int(await self._store.get_flag(self._own_flag) or 0)
            self._stored = (self._own_cursor, time.monotonic())
        sent = 0
        while events := await own.appended_after(self._own_cursor, limit=_BATCH):
            await self._publisher.send_all(audit_record(self._topic, e) for e in events)
            self._own_cursor = _after(events, self._own_cursor)
            sent += len(events)
        await self._store_cursor(force=False)
        return sent

    async def _store_cursor(self, *, force: bool) -> None:
        stored, at = self._stored
        now = time.monotonic()
        if self._own_cursor != stored and (force or now - at >= CURSOR_EVERY_SECONDS):
            await self._store.set_flag(self._own_flag, self._own_cursor)
            self._stored = (self._own_cursor, now)

    def _flag(self, name: str | None) -> str:
        return f"kafka.export.{self._topic}" + ("" if name is None else f"@{name}")

    async def _export(self, chain: AuditLog, name: str | None, *, wait: bool) -> int:
        suffix = "" if name is None else f"@{name}"
        flag = self._flag(name)
        sent = 0
        async with self._locks(_LOCK + suffix).hold(wait=wait) as held:
            if not held:
                return 0
            cursor = int(await self._store.get_flag(flag) or 0)
            while events := await chain.entries_after(cursor, limit=_BATCH):
                await self._publisher.send_all(audit_record(self._topic, e) for e in events)
                cursor = _after(events, cursor)
                await self._store.set_flag(flag, cursor)
                sent += len(events)
                if len(events) < _BATCH:
                    break  # the end: one more read would find nothing (or the next export's)
        return sent


def _after(events: list[AuditEvent], cursor: int) -> int:
    """The cursor past a published page."""
    last = events[-1].seq
    return int(last) if last is not None else cursor + len(events)
