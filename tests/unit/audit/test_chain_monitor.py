"""The audit page's view of the chain: new entries checked on each load, the whole chain seldom."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from soc_agent.audit import SQLiteAuditLog, VerifyResult
from soc_agent.audit.monitor import ChainMonitor
from tests.unit.audit.test_audit_log import KEY, event, fill, tamper


class CountingLog(SQLiteAuditLog):
    """The real SQLite log, noting how many entries each verification read."""

    reads: list[int]

    async def verify(
        self,
        *,
        expected_head: str | None = None,
        expected_count: int | None = None,
        anchors: Mapping[int, str] | None = None,
        since: VerifyResult | None = None,
    ) -> VerifyResult:
        result = await super().verify(since=since)
        self.reads.append(result.count - (since.count if since is not None else 0))
        return result


async def test_page_loads_read_only_what_was_appended(tmp_path: Path) -> None:
    log = CountingLog(tmp_path / "a.db", key=KEY)
    log.reads = []
    try:
        await fill(log, 50)
        monitor = ChainMonitor(log, full_every_seconds=3600)
        for _ in range(10):
            status = await monitor.status()
            assert status.result.ok and status.result.count == 50 and status.result.keyed
        assert monitor.full_checks == 1
        assert sum(log.reads) == 50  # one full read, then nothing new to read
        await log.append(event(51))
        status = await monitor.status()
        assert (status.result.ok, status.result.count, log.reads[-1]) == (True, 51, 1)
    finally:
        log.close()


async def test_a_bad_new_entry_shows_at_the_next_load(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    log = SQLiteAuditLog(db, key=KEY)
    try:
        await fill(log, 5)
        monitor = ChainMonitor(log, full_every_seconds=3600)
        assert (await monitor.status()).result.ok
        await log.append(event(6))
        tamper(db, "UPDATE audit_log SET outcome = 'approved' WHERE seq = 6")
        status = await monitor.status()
        assert (status.result.ok, status.result.first_bad_seq) == (False, 6)
        # a broken chain is re-read in full at every load until it is fixed
        assert (await monitor.status()).result.first_bad_seq == 6
        assert monitor.full_checks == 2
    finally:
        log.close()


async def test_an_old_entry_rewritten_in_place_is_caught_by_the_periodic_full_read(
    tmp_path: Path,
) -> None:
    db = tmp_path / "a.db"
    log = SQLiteAuditLog(db, key=KEY)
    try:
        await fill(log, 5)
        monitor = ChainMonitor(log, full_every_seconds=0.2)
        assert (await monitor.status()).result.ok
        tamper(db, "UPDATE audit_log SET outcome = 'approved' WHERE seq = 2")
        await asyncio.sleep(0.25)
        status = await monitor.status()
        assert (status.result.ok, status.result.first_bad_seq) == (False, 2)
    finally:
        log.close()
