"""The chain's state for pages that show it on every load, without re-reading the whole chain.

A full verification reads every entry (seconds at tens of thousands); doing
that on each load of the audit page let any viewer keep a core busy. The
monitor verifies fully at first and then every `full_every_seconds`, and in
between checks only the entries appended since its last good result. Calls
queue behind one lock, so a burst of page loads costs one verification.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from soc_agent.audit.base import AuditLog
from soc_agent.audit.chain import VerifyResult

__all__ = ["ChainMonitor", "ChainStatus"]


@dataclass(frozen=True)
class ChainStatus:
    result: VerifyResult
    full_age_seconds: float
    """How long ago every entry was last re-read (entries since then were checked on arrival)."""


class ChainMonitor:
    def __init__(self, audit: AuditLog, *, full_every_seconds: float) -> None:
        self._audit = audit
        self._full_every = full_every_seconds
        self._lock = asyncio.Lock()
        self._last: VerifyResult | None = None
        self._full_at = 0.0
        self.full_checks = 0  # how many whole-chain reads this monitor made

    async def status(self, *, full: bool = False) -> ChainStatus:
        """The chain's state now; `full` re-reads every entry whatever the schedule."""
        async with self._lock:
            now = time.monotonic()
            last = self._last
            stale = now - self._full_at >= self._full_every
            if full or last is None or not last.ok or stale:
                self._last = await self._audit.verify()
                self._full_at = now
                self.full_checks += 1
            else:
                self._last = await self._audit.verify(since=last)
            return ChainStatus(self._last, now - self._full_at)
