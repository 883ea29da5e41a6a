"""Publishes the audit chains to the audit topic, each in chain order, at least once.

The exporter copies each chain's entries with a higher `seq` than that
chain's cursor to the topic and moves the cursor only after the broker
acknowledged them. A cursor is a store flag (`kafka.export.<topic>` for the
shared chain, `kafka.export.<topic>@<chain>` for a named one), so every worker
sharing the backend shares it, and a lock per chain (`audit-export`,
`audit-export@<chain>`) lets one of them export that chain at a time.

A worker calls `export()` before committing offsets: when it returns, every
entry it appended before the call is on the topic (its own chain's, read back
with one real-time `_mget` on Elasticsearch). It waits for its own
chain's lock only (with the embedded store, or a single shared chain, that is
the one chain); the other chains (the shared one, other machines' chains, those
of processes that stopped) it exports at most every `OTHERS_EVERY_SECONDS`,
skipping any whose lock is taken: someone else is exporting it, and no worker
waits on every other's export.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from soc_agent.audit import AuditLog
from soc_agent.audit.chains import ChainedAuditLog
from soc_agent.models import AuditEvent
from soc_agent.runtime.kafka.producer import Publisher
from soc_agent.runtime.kafka.records import audit_record
from soc_agent.store import Store
from soc_agent.store.locks import Lock

__all__ = ["AuditExporter"]

_BATCH = 1000
_LOCK = "audit-export"
OTHERS_EVERY_SECONDS = 5.0


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
            if audit.own is not None:  # what it appended itself: read without a refresh
                sent = await self._export(audit.own, own, wait=True, fetch=audit.own.appended_after)
            else:
                sent = await self._export(audit.shared, None, wait=True)
            now = time.monotonic()
            if self._others_at is None or now - self._others_at >= OTHERS_EVERY_SECONDS:
                self._others_at = now
                for name in {None, *await audit.shared.chains()} - {own}:
                    sent += await self._export(audit.shared.sibling(name), name, wait=False)
        self.exported += sent
        return sent

    async def _export(
        self,
        chain: AuditLog,
        name: str | None,
        *,
        wait: bool,
        fetch: Callable[..., Awaitable[list[AuditEvent]]] | None = None,
    ) -> int:
        suffix = "" if name is None else f"@{name}"
        flag = f"kafka.export.{self._topic}{suffix}"
        sent = 0
        async with self._locks(_LOCK + suffix).hold(wait=wait) as held:
            if not held:
                return 0
            cursor = int(await self._store.get_flag(flag) or 0)
            while True:
                events = await (fetch or chain.entries_after)(cursor, limit=_BATCH)
                if not events:
                    break
                await self._publisher.send_all(audit_record(self._topic, e) for e in events)
                last = events[-1].seq
                cursor = int(last) if last is not None else cursor + len(events)
                await self._store.set_flag(flag, cursor)
                sent += len(events)
        return sent
