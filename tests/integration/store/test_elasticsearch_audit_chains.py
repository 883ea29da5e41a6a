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
from tests.integration.store.counting import CountingClient

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
    # What it holds in memory is only what follows on: once another object appended in
    # between, the entries are read back from the node, the other's included.
    await w1.shared.sibling("w1").append(_event(90, "other"))
    await w1.own.append(_event(91, "w1"))
    assert [e.seq for e in await w1.own.appended_after(11, limit=100)] == [12]
    assert await w1.own.appended_after(7, limit=100) == await w1.own.entries_after(7, limit=100)
    assert [e.actor for e in await w1.own.appended_after(9, limit=100)] == ["w1", "other", "w1"]


def _alone(shared: ElasticsearchAuditLog, name: str) -> ElasticsearchAuditLog:
    own = shared.sibling(name)
    own.write_alone_while(lambda: True)
    return own


async def _shared_and_alone(
    es: AsyncElasticsearch, prefix: str, name: str
) -> tuple[ElasticsearchAuditLog, ElasticsearchAuditLog]:
    """The shared chain, and chain `name` written by its only writer (batched)."""
    shared = ElasticsearchAuditLog(es, index=f"{prefix}-audit", key=KEY, number_of_replicas=0)
    await shared.ensure_index()
    return shared, _alone(shared, name)


async def test_appends_of_a_chain_written_alone_go_in_batches_and_verify(
    es: AsyncElasticsearch, prefix: str
) -> None:
    shared, own = await _shared_and_alone(es, prefix, "w1")
    entries = await asyncio.gather(*(own.append(_event(i, "w1")) for i in range(40)))
    # Each caller gets its own entry back, in the order it asked.
    assert [e.subject for e in entries] == [f"alert-{i}" for i in range(40)]
    assert sorted(e.seq or 0 for e in entries) == list(range(1, 41))
    assert own.requests < 10  # the first alone, then the rest batched
    # Details JSON cannot hold fail alone, before anything is written; the entries
    # around them go in.
    bad = _event(99, "w1").model_copy(update={"details": {"handle": object()}})
    async with own._lock:  # queue all three behind a batch in flight
        queued = [
            asyncio.ensure_future(own.append(e)) for e in (_event(40, "w1"), bad, _event(41, "w1"))
        ]
        await asyncio.sleep(0.01)
    results = await asyncio.gather(*queued, return_exceptions=True)
    assert isinstance(results[1], ValueError)
    assert [r.seq for r in (results[0], results[2])] == [41, 42]  # type: ignore[union-attr]
    worker = ChainedAuditLog(shared, own, actor="w1", anchor_seconds=3600)
    await worker.anchor()
    result = await _reader(es, prefix).verify()
    assert (result.ok, result.problem) == (True, None)
    assert dict(result.parts)["w1"].count == 42


async def test_a_single_append_to_a_chain_written_alone_is_one_request(
    es: AsyncElasticsearch, prefix: str, elasticsearch_url: str
) -> None:
    """Its writer knows the chain's end: nobody else appends to it, so an entry appended
    alone (no batch to join) is created without reading ahead first."""
    shared, _ = await _shared_and_alone(es, prefix, "w1")
    client = CountingClient(elasticsearch_url, request_timeout=30)
    try:
        own = _alone(ElasticsearchAuditLog(client, index=shared.index, key=KEY), "w1")
        await own.append(_event(0, "w1"))  # the first finds the end by a search
        client.requests.clear()
        for i in range(1, 4):
            await own.append(_event(i, "w1"))
        assert [m for m, _ in client.requests] == ["PUT"] * 3, client.requests
    finally:
        await client.close()


async def test_entries_appended_later_go_in_the_next_appends_batch(
    es: AsyncElasticsearch, prefix: str
) -> None:
    shared, own = await _shared_and_alone(es, prefix, "w1")
    await own.append(_event(0, "w1"))  # the head, known from here on
    before = own.requests
    later = [own.append_later(_event(i, "w1")) for i in (1, 2)]
    written = await own.append(_event(3, "w1"))
    assert own.requests == before + 1  # one _bulk for the three
    assert [(await e).seq for e in later] + [written.seq] == [2, 3, 4]
    alone = own.append_later(_event(4, "w1"))
    assert (await alone).seq == 5  # nothing else came: awaiting it writes it
    result = await shared.sibling("w1").verify()
    assert (result.ok, result.count) == (True, 5)


async def test_a_batch_that_meets_another_writer_fails_loudly(
    es: AsyncElasticsearch, prefix: str
) -> None:
    """A process stalled past its chain's lease may find another writer there: its batch
    must fail, not report entries the chain does not hold."""
    shared = ElasticsearchAuditLog(es, index=f"{prefix}-audit", key=KEY, number_of_replicas=0)
    await shared.ensure_index()
    stalled = _alone(shared, "w1")
    await stalled.append(_event(0, "w1"))
    await shared.sibling("w1").append(_event(1, "intruder"))  # entry 2, unknown to `stalled`
    async with stalled._lock:  # the four queue behind a batch in flight: one batch
        queued = [asyncio.ensure_future(stalled.append(_event(i, "w1"))) for i in range(2, 6)]
        await asyncio.sleep(0.01)
    results = await asyncio.gather(*queued, return_exceptions=True)
    failed = [r for r in results if isinstance(r, Exception)]
    assert failed and all("written by another process" in str(r) for r in failed)
    # Once failed, it reads the head again: the next append follows the real chain.
    after = await stalled.append(_event(9, "w1"))
    stored = await shared.sibling("w1").list(limit=50)
    assert stored[-1] == after
    # The entries the batch created after the intruder's hang off an entry the chain
    # does not hold: verification names the first.
    assert (await shared.sibling("w1").verify()).first_bad_seq == 3


async def test_a_second_process_on_a_chain_name_writes_the_next_free_chain(
    elasticsearch_url: str, es: AsyncElasticsearch, prefix: str
) -> None:
    """Each chain has one writer, its lease's holder, who batches: a second process
    configured with the same chain name writes the next free one, and the whole verifies."""
    from soc_agent.runtime.backend import open_backend
    from soc_agent.settings import load_settings

    settings = load_settings(
        store_backend="elasticsearch",
        audit_key="a-key-the-workers-share-0123456789",
        elasticsearch={
            "hosts": [elasticsearch_url],
            "index_prefix": prefix,
            "number_of_replicas": 0,
            "audit_chain": "host-1",
        },
    )
    async with open_backend(settings) as first, open_backend(settings) as second:
        chains = [b.audit for b in (first, second)]
        assert all(isinstance(c, ChainedAuditLog) and c.own is not None for c in chains)
        owns = [c.own for c in chains if isinstance(c, ChainedAuditLog) and c.own is not None]
        before = [o.requests for o in owns]
        await asyncio.gather(*(chains[i % 2].append(_event(i, f"p{i % 2}")) for i in range(40)))
        assert [o.chain for o in owns] == ["host-1", "host-1.2"]
        made = [o.requests - b for o, b in zip(owns, before, strict=True)]
        assert max(made) < 15, f"each batches its 20 entries: {made} requests"
        result = await first.audit.verify()
        assert (result.ok, result.problem) == (True, None)


async def test_entries_after_reads_ids_in_order_and_stops_at_a_hole(
    es: AsyncElasticsearch, prefix: str
) -> None:
    w1, _ = await _two_workers(es, prefix)
    assert w1.own is not None
    reader = w1.shared.sibling("w1")  # another process: nothing in memory
    assert [e.seq for e in await reader.entries_after(0, limit=100)] == list(range(1, 11))
    assert [e.seq for e in await reader.entries_after(3, limit=4)] == [4, 5, 6, 7]
    assert await reader.entries_after(10, limit=100) == []
    await es.delete(index=reader.index, id="w1:6", refresh=True)
    # Not exported past a hole: `audit verify` names it instead.
    assert [e.seq for e in await reader.entries_after(2, limit=100)] == [3, 4, 5]
    assert await reader.entries_after(5, limit=100) == []
    assert (await reader.verify()).first_bad_seq == 6
