"""Each worker its own audit chain, anchored in the shared one, on a real node.

Separate log instances on one index stand for separate worker processes. The
attacks are those of someone who can write the index: cut a chain's tail,
rewrite an anchored entry, drop a whole chain.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from elasticsearch import AsyncElasticsearch

from soc_agent.audit.chains import ANCHOR_ACTION, ChainedAuditLog
from soc_agent.audit.elasticsearch_log import ElasticsearchAuditLog
from soc_agent.models import AuditEvent
from tests.infra.fixtures import needs

pytestmark = needs("elasticsearch")

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
KEY = b"k" * 32


def _event(i: int, actor: str) -> AuditEvent:
    return AuditEvent(
        actor=actor,
        action="alert.correlate",
        subject=f"alert-{i}",
        outcome="new",
        at=T0 + timedelta(seconds=i),
    )


def _worker(shared: ElasticsearchAuditLog, name: str) -> ChainedAuditLog:
    return ChainedAuditLog(shared, shared.sibling(name), actor=name, anchor_seconds=3600)


async def _two_workers(es: AsyncElasticsearch, prefix: str) -> tuple[ChainedAuditLog, ...]:
    shared = ElasticsearchAuditLog(es, index=f"{prefix}-audit", key=KEY, number_of_replicas=0)
    await shared.ensure_index()
    workers = (_worker(shared, "w1"), _worker(shared.sibling(None), "w2"))
    await asyncio.gather(
        *(workers[i % 2].append(_event(i, f"w{i % 2 + 1}")) for i in range(20)),
    )
    for w in workers:
        await w.anchor()
    return workers


def _reader(es: AsyncElasticsearch, prefix: str) -> ChainedAuditLog:
    shared = ElasticsearchAuditLog(es, index=f"{prefix}-audit", key=KEY)
    return ChainedAuditLog(shared, None, actor="auditor", anchor_seconds=3600)


async def test_workers_append_to_their_own_chains_and_the_whole_verifies(
    es: AsyncElasticsearch, prefix: str
) -> None:
    w1, w2 = await _two_workers(es, prefix)
    # Each worker's entries are a gapless chain of its own; only anchors are shared.
    assert w1.own is not None and w2.own is not None
    assert [e.seq for e in await w1.own.list(limit=50)] == list(range(1, 11))
    assert {e.chain for e in await w1.own.list(limit=50)} == {"w1"}
    shared = await w1.shared.list(limit=50)
    assert [(e.action, e.details["chain"], e.details["seq"]) for e in shared] == [
        (ANCHOR_ACTION, "w1", 10),
        (ANCHOR_ACTION, "w2", 10),
    ]
    result = await _reader(es, prefix).verify()
    assert (result.ok, result.count, result.problem) == (True, 22, None)
    assert dict(result.parts).keys() == {"", "w1", "w2"}
    # The shared chain's head is what an anchor file or the audit topic records.
    assert await w1.head() == (2, result.head)
    # Listing reads every chain, in time order.
    listed = await _reader(es, prefix).list(limit=100)
    assert len(listed) == 22
    assert [e.at for e in listed] == sorted(e.at for e in listed)
    # Anchoring an unchanged head appends nothing.
    await w1.anchor()
    assert await w1.head() == (2, result.head)


async def test_a_chain_cut_below_its_anchored_head_fails(
    es: AsyncElasticsearch, prefix: str
) -> None:
    await _two_workers(es, prefix)
    # Deleting w2's last two entries leaves a consistent chain of 8, but 10 was anchored.
    for seq in (9, 10):
        await es.delete(index=f"{prefix}-audit", id=f"w2:{seq}", refresh=True)
    result = await _reader(es, prefix).verify()
    assert (result.ok, result.first_bad_seq) == (False, 9)
    assert result.problem is not None and result.problem.startswith("chain w2: ")
    assert "tail truncated" in result.problem


async def test_a_rewritten_anchored_entry_fails_even_incrementally(
    es: AsyncElasticsearch, prefix: str
) -> None:
    w1, _ = await _two_workers(es, prefix)
    reader = _reader(es, prefix)
    first = await reader.verify()
    assert first.ok
    # More entries and a new anchor; then entry 3 of w1, inside what was read, is rewritten.
    for i in range(20, 23):
        await w1.append(_event(i, "w1"))
    await w1.anchor()
    later = await reader.verify(since=first)
    assert (later.ok, later.count) == (True, 26)
    await es.update(index=f"{prefix}-audit", id="w1:3", doc={"reason": "x"}, refresh=True)
    full = await reader.verify()
    assert (full.ok, full.first_bad_seq) == (False, 3)
    assert full.problem is not None and full.problem.startswith("chain w1: ")


async def test_an_anchored_chain_that_vanished_fails(es: AsyncElasticsearch, prefix: str) -> None:
    await _two_workers(es, prefix)
    for seq in range(1, 11):
        await es.delete(index=f"{prefix}-audit", id=f"w1:{seq}")
    await es.indices.refresh(index=f"{prefix}-audit")
    result = await _reader(es, prefix).verify()
    assert not result.ok
    assert result.problem is not None and result.problem.startswith("chain w1: ")


async def test_an_entry_moved_to_another_chain_fails(es: AsyncElasticsearch, prefix: str) -> None:
    """The chain's name is hashed: relabelling an entry breaks it even with ids intact."""
    await _two_workers(es, prefix)
    await es.update(index=f"{prefix}-audit", id="w1:4", doc={"chain": "w9"}, refresh=True)
    result = await _reader(es, prefix).verify()
    assert not result.ok
    assert result.problem is not None and "chain w" in result.problem


async def test_what_a_process_appended_is_read_back_without_a_search(
    es: AsyncElasticsearch, prefix: str
) -> None:
    w1, _ = await _two_workers(es, prefix)
    assert w1.own is not None
    assert [e.seq for e in await w1.own.appended_after(7, limit=100)] == [8, 9, 10]
    assert [e.seq for e in await w1.own.appended_after(2, limit=3)] == [3, 4, 5]
    assert await w1.own.appended_after(10, limit=100) == []
    # Another process's object knows nothing it appended: the exporter's search covers it.
    assert await w1.shared.sibling("w1").appended_after(0, limit=100) == []
    entries = await w1.own.appended_after(0, limit=100)
    assert entries == await w1.own.entries_after(0, limit=100)
