"""Leases in Elasticsearch, on a real node: exclusion, expiry, renewal, loss, cancellation.

Each `LeaseManager` gets its own client and owner, as separate machines
would; the dead-process test SIGKILLs a real subprocess holding a lease.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from elasticsearch import AsyncElasticsearch, NotFoundError

from soc_agent.errors import StoreError
from soc_agent.store.elasticsearch_leases import LeaseManager
from soc_agent.store.locks import Lock
from tests.infra.fixtures import needs
from tests.integration.store.counting import CountingClient

pytestmark = needs("elasticsearch")

ROOT = Path(__file__).resolve().parents[3]
MakeManager = Callable[..., Awaitable[LeaseManager]]

# Run by the dead-process test: hold a lease, say so, then wait to be killed.
_HOLDER = """
import asyncio, sys
from elasticsearch import AsyncElasticsearch
from soc_agent.store.elasticsearch_leases import LeaseManager

async def main(url: str, index: str, ttl: float) -> None:
    async with AsyncElasticsearch(url, request_timeout=30) as es:
        leases = LeaseManager(es, index=index, owner="doomed", ttl_seconds=ttl,
                              number_of_replicas=0)
        async with leases.lock("chore:maintenance").hold():
            print("held", flush=True)
            await asyncio.sleep(3600)

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
"""


@pytest.fixture
def lease_index(prefix: str) -> str:
    return f"{prefix}-leases"


@pytest.fixture
async def managers(
    es_clients: Callable[[], AsyncElasticsearch], lease_index: str, elasticsearch_url: str
) -> AsyncIterator[MakeManager]:
    """One manager per simulated machine (own client, own owner), closed at the end.

    With `counting=True` the manager's client is a `CountingClient`
    (`manager_client(manager)` returns it).
    """
    made: list[LeaseManager] = []
    counting_clients: list[CountingClient] = []

    async def make(
        owner: str, *, ttl: float = 15.0, counting: bool = False, **kwargs: Any
    ) -> LeaseManager:
        client: AsyncElasticsearch = es_clients()
        if counting:
            client = CountingClient(elasticsearch_url, request_timeout=30)
            counting_clients.append(client)
        manager = LeaseManager(
            client,
            index=lease_index,
            owner=owner,
            ttl_seconds=ttl,
            number_of_replicas=0,
            **kwargs,
        )
        await manager.ensure_index()
        made.append(manager)
        return manager

    yield make
    for manager in made:
        await manager.aclose()
    for client in counting_clients:
        await client.close()


def manager_client(manager: LeaseManager) -> CountingClient:
    client = manager._es
    assert isinstance(client, CountingClient)
    return client


async def _document(es: AsyncElasticsearch, index: str, name: str) -> dict[str, Any] | None:
    try:
        resp = await es.get(index=index, id=name)
    except NotFoundError:
        return None
    return dict(resp["_source"])


async def _gets(es: AsyncElasticsearch, index: str) -> int:
    stats = await es.indices.stats(index=index, metric="get")
    return int(stats["_all"]["total"]["get"]["total"])


async def test_two_machines_never_lose_an_update(managers: MakeManager) -> None:
    machines = [await managers("worker-a@host-1"), await managers("worker-b@host-2")]
    counter = [0]
    inside = [0]
    overlap = [0]

    async def increment(leases: LeaseManager) -> None:
        for _ in range(10):
            async with leases.lock("incident:inc-4f1c").hold():
                inside[0] += 1
                overlap[0] = max(overlap[0], inside[0])
                value = counter[0]
                await asyncio.sleep(0.002)  # read-modify-write across an await
                counter[0] = value + 1
                inside[0] -= 1

    await asyncio.gather(*(increment(m) for m in machines for _ in range(4)))
    assert counter[0] == 80
    assert overlap[0] == 1
    assert all(m.held == frozenset() for m in machines)


async def test_tasks_of_one_process_queue_locally_without_requests(
    managers: MakeManager, es: AsyncElasticsearch, lease_index: str
) -> None:
    leases = await managers("worker-a@host-1")
    counter = [0]

    async def increment() -> None:
        async with leases.lock("fp:9f86d081").hold() as acquired:
            assert acquired
            value = counter[0]
            await asyncio.sleep(0.002)
            counter[0] = value + 1

    before = await _gets(es, lease_index)
    await asyncio.gather(*(increment() for _ in range(20)))
    assert counter[0] == 20
    # Contention inside the process never reached Elasticsearch: no create conflicted,
    # so nobody had to read the lease document.
    assert await _gets(es, lease_index) == before


async def test_wait_false_yields_false_while_someone_else_holds_it(
    managers: MakeManager,
) -> None:
    first, second = await managers("worker-a@host-1"), await managers("worker-b@host-2")
    lock: Lock = first.lock("chore:audit-export")
    async with lock.hold() as acquired:
        assert acquired
        started = time.perf_counter()
        async with second.lock("chore:audit-export").hold(wait=False) as other:
            assert other is False
        async with first.lock("chore:audit-export").hold(wait=False) as same_process:
            assert same_process is False
        assert time.perf_counter() - started < 1.0
    async with second.lock("chore:audit-export").hold(wait=False) as now_free:
        assert now_free is True


async def test_lease_of_a_killed_process_expires_after_the_ttl(
    managers: MakeManager, elasticsearch_url: str, lease_index: str, es: AsyncElasticsearch
) -> None:
    ttl = 1.5
    survivor = await managers("worker-b@host-2", ttl=ttl)
    await survivor.ensure_index()
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _HOLDER,
        elasticsearch_url,
        lease_index,
        str(ttl),
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 60) == b"held\n"
        # Alive, it renews: past twice its TTL nobody else gets in.
        deadline = time.monotonic() + 2 * ttl
        while time.monotonic() < deadline:
            async with survivor.lock("chore:maintenance").hold(wait=False) as acquired:
                assert acquired is False
            await asyncio.sleep(0.1)
        holder.send_signal(signal.SIGKILL)
        await holder.wait()
        killed = time.monotonic()
        async with survivor.lock("chore:maintenance").hold() as acquired:
            waited = time.monotonic() - killed
            assert acquired
            document = await _document(es, lease_index, "chore:maintenance")
            assert document is not None and document["owner"] == "worker-b@host-2"
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
    # Renewed every ttl/3, so it expired between 2/3 ttl and ttl after the kill.
    assert 0.5 * ttl < waited < ttl + 1.0


async def test_renewal_keeps_a_lease_past_its_ttl(
    managers: MakeManager, es: AsyncElasticsearch, lease_index: str
) -> None:
    holder, other = await managers("worker-a@host-1", ttl=1.5), await managers("worker-b@host-2")
    lease = holder.lock("incident:inc-77")
    async with lease.hold():
        first = await _document(es, lease_index, "incident:inc-77")
        for _ in range(15):  # 3 s, twice the TTL
            await asyncio.sleep(0.2)
            async with other.lock("incident:inc-77").hold(wait=False) as acquired:
                assert acquired is False
        last = await _document(es, lease_index, "incident:inc-77")
        assert not lease.lost
    assert first is not None and last is not None
    assert last["token"] == first["token"]
    assert last["expires_at"] >= first["expires_at"] + 1500
    assert await _document(es, lease_index, "incident:inc-77") is None


async def test_lost_lease_is_detected_and_not_deleted_on_release(
    managers: MakeManager,
    es: AsyncElasticsearch,
    lease_index: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ttl = 1.0
    holder = await managers("worker-a@host-1", ttl=ttl)
    # A machine whose clock runs a minute ahead sees the lease expired and takes it over:
    # the skew the module docstring warns about.
    skewed = await managers("worker-b@host-2", ttl=ttl, clock=lambda: time.time() + 60)
    lease = holder.lock("entity:host:wks-fin-042")
    caplog.set_level(logging.WARNING, logger="soc_agent.store.elasticsearch_leases")
    async with lease.hold():
        original = await _document(es, lease_index, "entity:host:wks-fin-042")
        async with skewed.lock("entity:host:wks-fin-042").hold(wait=False) as taken:
            assert taken
            for _ in range(30):
                if lease.lost:
                    break
                await asyncio.sleep(0.05)
            assert lease.lost
            assert holder.held == frozenset({"entity:host:wks-fin-042"})
        assert holder.held == frozenset({"entity:host:wks-fin-042"})
    assert holder.held == frozenset()
    assert original is not None
    messages = [r.getMessage() for r in caplog.records]
    assert any("was lost" in m and "entity:host:wks-fin-042" in m for m in messages)
    assert not any(original["token"] in m for m in messages)


async def test_release_after_takeover_leaves_the_new_holders_lease(
    managers: MakeManager, es: AsyncElasticsearch, lease_index: str
) -> None:
    holder = await managers("worker-a@host-1", ttl=1.0)
    skewed = await managers("worker-b@host-2", ttl=15.0, clock=lambda: time.time() + 60)
    taken = asyncio.Event()
    done = asyncio.Event()

    async def take_over() -> None:
        async with skewed.lock("chore:maintenance").hold(wait=False) as acquired:
            assert acquired
            taken.set()
            await done.wait()

    async with holder.lock("chore:maintenance").hold():
        task = asyncio.create_task(take_over())
        await taken.wait()
    # The first holder left without noticing the loss yet; its release must not delete.
    document = await _document(es, lease_index, "chore:maintenance")
    assert document is not None and document["owner"] == "worker-b@host-2"
    done.set()
    await task


async def test_cancelled_waiter_never_holds_the_lease_later(
    managers: MakeManager, es: AsyncElasticsearch, lease_index: str
) -> None:
    holder, waiter = await managers("worker-a@host-1"), await managers("worker-b@host-2")
    entered = asyncio.Event()

    async def wait_for_it() -> None:
        async with waiter.lock("incident:inc-9").hold():
            entered.set()

    async with holder.lock("incident:inc-9").hold():
        task = asyncio.create_task(wait_for_it())
        await asyncio.sleep(0.3)  # several create/read/back-off rounds
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await asyncio.sleep(0.3)
    assert not entered.is_set()
    assert waiter.held == frozenset()
    assert await _document(es, lease_index, "incident:inc-9") is None


async def test_cancelling_mid_request_leaves_nothing_behind(
    managers: MakeManager, es: AsyncElasticsearch, lease_index: str
) -> None:
    leases = await managers("worker-a@host-1")
    for ticks in range(60):
        name = f"fp:{ticks:02d}"
        task = asyncio.create_task(_hold_forever(leases, name))
        # 0..59 loop turns: cancels before the create is sent, while it is in flight, and
        # after it landed but before the caller knew.
        for _ in range(ticks):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await leases.aclose()
    assert leases.held == frozenset()
    for ticks in range(60):
        assert await _document(es, lease_index, f"fp:{ticks:02d}") is None, ticks


async def _hold_forever(leases: LeaseManager, name: str) -> None:
    async with leases.lock(name).hold():
        await asyncio.sleep(3600)


async def test_hold_all_on_overlapping_sets_does_not_deadlock(managers: MakeManager) -> None:
    machines = [await managers(f"worker-{n}@host-{n}") for n in range(3)]
    # Taken in the given order these would wait on each other in a cycle.
    sets = [
        ["entity:b", "entity:a"],
        ["entity:c", "entity:b"],
        ["entity:a", "entity:c", "entity:a"],
    ]
    occupied: dict[str, int] = {}

    async def work(leases: LeaseManager, names: list[str]) -> None:
        for _ in range(8):
            async with leases.hold_all(names):
                for name in set(names):
                    assert occupied.get(name, 0) == 0, name
                    occupied[name] = 1
                await asyncio.sleep(0.001)
                for name in set(names):
                    occupied[name] = 0

    jobs = [work(m, names) for m, names in zip(machines, sets, strict=True) for _ in range(2)]
    await asyncio.wait_for(asyncio.gather(*jobs), timeout=60)
    assert all(m.held == frozenset() for m in machines)


async def test_aclose_releases_held_leases_and_refuses_new_ones(
    managers: MakeManager, es: AsyncElasticsearch, lease_index: str
) -> None:
    leases = await managers("worker-a@host-1")
    entered, leave = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with leases.hold_all(["chore:maintenance", "chore:audit-export"]):
            entered.set()
            await leave.wait()

    task = asyncio.create_task(hold())
    await entered.wait()
    await leases.aclose()
    assert leases.held == frozenset()
    assert await _document(es, lease_index, "chore:maintenance") is None
    leave.set()
    await task
    with pytest.raises(StoreError, match="closed"):
        async with leases.lock("chore:maintenance").hold():
            pass


async def test_long_names_are_hashed_into_valid_ids(managers: MakeManager) -> None:
    first, second = await managers("worker-a@host-1"), await managers("worker-b@host-2")
    name = "entity:url:https://cdn.example.com/" + "a" * 2000
    async with first.lock(name).hold(), second.lock(name).hold(wait=False) as acquired:
        assert acquired is False


async def test_hold_all_of_free_names_is_one_bulk_create_and_one_bulk_delete(
    managers: MakeManager, es: AsyncElasticsearch, lease_index: str
) -> None:
    leases = await managers("worker-a@host-1", counting=True)
    client = manager_client(leases)
    names = [
        "fp:9f86d081",
        "entity:host:wks-fin-042",
        "entity:user:corp\\jdoe",
        "entity:ip:10.2.3.4",
    ]
    client.requests.clear()
    async with leases.hold_all(names):
        assert client.requests == [("PUT", "/_bulk")]
        assert leases.held == frozenset(names)
        for name in names:
            document = await _document(es, lease_index, name)
            assert document is not None and document["owner"] == "worker-a@host-1"
    assert client.requests == [("PUT", "/_bulk"), ("PUT", "/_bulk")]
    assert leases.held == frozenset()
    for name in names:
        assert await _document(es, lease_index, name) is None


async def test_a_lease_handed_over_at_release_is_adopted_without_a_request(
    managers: MakeManager, es: AsyncElasticsearch, lease_index: str
) -> None:
    leases = await managers("worker-a@host-1", counting=True)
    other = await managers("worker-b@host-2")
    client = manager_client(leases)
    client.requests.clear()
    async with leases.hold_all(["fp:1", "entity:host:a"]) as hand_over:
        hand_over.then = "incident:inc-1"
    # One bulk took the keys, one released them and took the incident's lease.
    assert client.requests == [("PUT", "/_bulk"), ("PUT", "/_bulk")]
    document = await _document(es, lease_index, "incident:inc-1")
    assert document is not None and document["owner"] == "worker-a@host-1"
    async with leases.lock("incident:inc-1").hold() as adopted:
        assert adopted
        assert client.requests == [("PUT", "/_bulk"), ("PUT", "/_bulk")]  # nothing more
        async with other.lock("incident:inc-1").hold(wait=False) as taken:
            assert taken is False
    async with other.lock("incident:inc-1").hold(wait=False) as free:
        assert free is True


async def test_a_handed_over_lease_nobody_adopts_is_released_and_a_held_one_not_taken(
    managers: MakeManager,
) -> None:
    leases, other = await managers("worker-a@host-1"), await managers("worker-b@host-2")
    async with leases.hold_all(["fp:2"]) as hand_over:
        hand_over.then = "incident:inc-2"
    started = time.perf_counter()
    async with other.lock("incident:inc-2").hold() as acquired:  # waits out the grace
        assert acquired
        assert 0.5 < time.perf_counter() - started < 5
        # Held by another process: the hand-over takes nothing, the hold waits its turn.
        async with leases.hold_all(["fp:3"]) as hand_over:
            hand_over.then = "incident:inc-2"
        async with leases.lock("incident:inc-2").hold(wait=False) as mine:
            assert mine is False
    async with leases.lock("incident:inc-2").hold(wait=False) as mine:
        assert mine is True


async def test_hold_all_waits_for_a_taken_name_holding_only_earlier_ones(
    managers: MakeManager, es: AsyncElasticsearch, lease_index: str
) -> None:
    bulk, other, third = (
        await managers("worker-a@host-1"),
        await managers("worker-b@host-2"),
        await managers("worker-c@host-3"),
    )
    names = ["lease:a", "lease:b", "lease:c", "lease:d", "lease:e"]
    occupied: dict[str, int] = {}
    c_held, release_c, entered = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def hold_c() -> None:
        async with other.lock("lease:c").hold():
            occupied["lease:c"] = occupied.get("lease:c", 0) + 1
            c_held.set()
            await release_c.wait()
            occupied["lease:c"] -= 1

    async def hold_everything() -> None:
        async with bulk.hold_all(reversed(names)):
            for name in names:
                assert occupied.get(name, 0) == 0, name
                occupied[name] = 1
            entered.set()
            await asyncio.sleep(0.05)
            for name in names:
                occupied[name] = 0

    holder = asyncio.create_task(hold_c())
    await c_held.wait()
    waiter = asyncio.create_task(hold_everything())
    for _ in range(100):
        if bulk.held == {"lease:a", "lease:b"}:
            break
        await asyncio.sleep(0.01)
    # Waiting for c, it holds only the names that sort before c: d and e, which its bulk
    # took too, were let go, so a third machine can take them meanwhile.
    assert bulk.held == {"lease:a", "lease:b"}
    assert await _document(es, lease_index, "lease:d") is None
    async with third.hold_all(["lease:d", "lease:e"]):
        assert not entered.is_set()
    async with third.lock("lease:a").hold(wait=False) as acquired:
        assert acquired is False
    release_c.set()
    await asyncio.wait_for(asyncio.gather(holder, waiter), timeout=30)
    assert entered.is_set()
    assert bulk.held == other.held == third.held == frozenset()
    for name in names:
        assert await _document(es, lease_index, name) is None


async def test_cancelled_hold_all_waiting_for_a_taken_name_leaves_nothing_held(
    managers: MakeManager, es: AsyncElasticsearch, lease_index: str
) -> None:
    bulk, other = await managers("worker-a@host-1"), await managers("worker-b@host-2")
    names = ["lease:a", "lease:b", "lease:c", "lease:d"]
    async with other.lock("lease:c").hold():
        task = asyncio.create_task(_hold_all_forever(bulk, names))
        for _ in range(100):
            if bulk.held == {"lease:a", "lease:b"}:
                break
            await asyncio.sleep(0.01)
        assert bulk.held == {"lease:a", "lease:b"}
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert bulk.held == frozenset()
        for name in ["lease:a", "lease:b", "lease:d"]:
            assert await _document(es, lease_index, name) is None, name


async def test_overlapping_bulk_sets_in_a_cycle_never_deadlock(managers: MakeManager) -> None:
    machines = [await managers(f"worker-{n}@host-{n}", counting=True) for n in range(3)]
    ring = [f"entity:{n}" for n in range(6)]
    # Each set overlaps both others; given in descending order, taken as given they
    # would wait on each other in a cycle.
    sets = [[ring[(2 * m + k) % 6] for k in range(4)][::-1] for m in range(3)]
    occupied: dict[str, int] = {}

    async def work(leases: LeaseManager, names: list[str]) -> None:
        for _ in range(8):
            async with leases.hold_all(names):
                for name in names:
                    assert occupied.get(name, 0) == 0, name
                    occupied[name] = 1
                await asyncio.sleep(0.002)
                for name in names:
                    occupied[name] = 0

    jobs = [work(m, names) for m, names in zip(machines, sets, strict=True) for _ in range(2)]
    await asyncio.wait_for(asyncio.gather(*jobs), timeout=60)
    assert all(m.held == frozenset() for m in machines)
    clients = [manager_client(m) for m in machines]
    # Every machine went through the bulk path, and conflicts sent some to the per-name
    # fallback (which reads the lease document it could not create).
    assert all(c.sent("PUT", "/_bulk") >= 16 for c in clients)
    assert sum(c.sent("GET", "") for c in clients) > 0


async def test_cancelling_hold_all_mid_bulk_leaves_nothing_behind(
    managers: MakeManager, es: AsyncElasticsearch, lease_index: str
) -> None:
    leases = await managers("worker-a@host-1")
    for ticks in range(60):
        names = [f"fp:{ticks:02d}:{k}" for k in range(4)]
        task = asyncio.create_task(_hold_all_forever(leases, names))
        # Cancels before the bulk is sent, while it is in flight, after it landed but
        # before the caller knew, and while it is held.
        for _ in range(ticks):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await leases.aclose()
    assert leases.held == frozenset()
    for ticks in range(60):
        for k in range(4):
            assert await _document(es, lease_index, f"fp:{ticks:02d}:{k}") is None, (ticks, k)


async def _hold_all_forever(leases: LeaseManager, names: list[str]) -> None:
    async with leases.hold_all(names):
        await asyncio.sleep(3600)


async def test_a_lingering_lease_is_taken_again_locally_and_deleted_with_the_next_bulk(
    managers: MakeManager, es: AsyncElasticsearch, lease_index: str
) -> None:
    leases = await managers("worker-a@host-1", counting=True, linger_seconds=0.3)
    other = await managers("worker-b@host-2")
    client = manager_client(leases)
    client.requests.clear()
    keys = ["fp:1", "entity:host:a"]
    async with leases.hold_all(keys) as hand_over:
        hand_over.then = "incident:inc-1"
    async with leases.lock("incident:inc-1", linger=True).hold() as adopted:
        assert adopted
    # Let go, yet still held: another process is refused, this one takes them for free.
    for name in [*keys, "incident:inc-1"]:
        document = await _document(es, lease_index, name)
        assert document is not None and document["owner"] == "worker-a@host-1"
    async with other.lock("fp:1").hold(wait=False) as taken:
        assert taken is False
    async with leases.hold_all(keys) as hand_over:
        hand_over.then = "incident:inc-1"  # idle here: kept for the hold below, no create
    async with leases.lock("incident:inc-1", linger=True).hold() as adopted:
        assert adopted
    assert client.requests == [("PUT", "/_bulk"), ("PUT", "/_bulk")]
    # Once due, the idle leases' deletes ride on the next bulk this process sends.
    await asyncio.sleep(0.35)
    async with leases.hold_all(["fp:2"]):
        assert client.requests == [("PUT", "/_bulk")] * 3
        for name in [*keys, "incident:inc-1"]:
            assert await _document(es, lease_index, name) is None
    async with other.lock("fp:1").hold(wait=False) as free:
        assert free is True


async def test_an_idle_lease_nobody_here_needs_is_deleted_within_two_lingers(
    managers: MakeManager,
) -> None:
    leases = await managers("worker-a@host-1", counting=True, linger_seconds=0.3)
    other = await managers("worker-b@host-2")
    client = manager_client(leases)
    async with leases.lock("chore:maintenance").hold():
        pass  # a lease not asked to linger is deleted at once
    async with other.lock("chore:maintenance").hold(wait=False) as free:
        assert free is True
    async with leases.lock("incident:inc-3", linger=True).hold():
        pass
    client.requests.clear()
    started = time.perf_counter()
    async with other.lock("incident:inc-3").hold() as acquired:  # waits for the flush
        assert acquired
        assert 0.2 < time.perf_counter() - started < 2.0
    assert client.requests == [("PUT", "/_bulk")]  # the flush: one bulk of deletes
    assert leases.held == frozenset()


async def test_hold_all_lets_idle_names_after_a_taken_one_go_before_waiting(
    managers: MakeManager,
) -> None:
    """A long linger must not hold up another machine in a cycle: an idle name that
    sorts after the one `hold_all` waits for is deleted first, like a name it took."""
    leases = await managers("worker-a@host-1", linger_seconds=5.0)
    other = await managers("worker-b@host-2")
    async with leases.hold_all(["entity:b"]):
        pass  # now idle for 5 s
    async with other.lock("entity:a").hold():
        waiting = asyncio.create_task(_hold_all_briefly(leases, ["entity:a", "entity:b"]))
        started = time.perf_counter()
        async with other.lock("entity:b").hold() as acquired:
            assert acquired
            assert time.perf_counter() - started < 2.0
        assert not waiting.done()
    await asyncio.wait_for(waiting, 10)


async def _hold_all_briefly(leases: LeaseManager, names: list[str]) -> None:
    async with leases.hold_all(names):
        assert leases.held >= frozenset(names)


async def test_aclose_deletes_idle_leases(
    managers: MakeManager, es: AsyncElasticsearch, lease_index: str
) -> None:
    leases = await managers("worker-a@host-1", linger_seconds=5.0)
    async with leases.lock("incident:inc-4", linger=True).hold():
        pass
    assert await _document(es, lease_index, "incident:inc-4") is not None
    started = time.perf_counter()
    await leases.aclose()
    assert time.perf_counter() - started < 2.0
    assert await _document(es, lease_index, "incident:inc-4") is None


def test_linger_must_be_short_beside_the_ttl(es_clients: Callable[[], AsyncElasticsearch]) -> None:
    with pytest.raises(ValueError, match="linger_seconds"):
        LeaseManager(es_clients(), index="x-leases", owner="o", ttl_seconds=3, linger_seconds=2)


async def test_a_waiter_reads_the_lease_each_attempt_and_creates_only_once_it_is_free(
    managers: MakeManager,
) -> None:
    holder = await managers("worker-a@host-1")
    waiter = await managers("worker-b@host-2", counting=True)
    client = manager_client(waiter)
    async with holder.lock("incident:inc-5").hold():
        client.requests.clear()
        waiting = asyncio.create_task(_hold_briefly(waiter, "incident:inc-5"))
        await asyncio.sleep(0.6)
        assert not waiting.done()
    await asyncio.wait_for(waiting, 10)
    writes = [r for r in client.requests if r[0] == "PUT"]  # creates (op_type=create)
    reads = [r for r in client.requests if r[0] == "GET"]
    assert len(writes) <= 2 < len(reads)  # the first try, and the one that took it


async def _hold_briefly(leases: LeaseManager, name: str) -> None:
    async with leases.lock(name).hold() as acquired:
        assert acquired


async def test_waits_on_several_leases_reread_them_together(managers: MakeManager) -> None:
    holder = await managers("worker-a@host-1")
    waiter = await managers("worker-b@host-2", counting=True)
    client = manager_client(waiter)
    names = [f"incident:inc-{n}" for n in range(6)]
    async with AsyncExitStack() as held:
        for name in names:
            await held.enter_async_context(holder.lock(name).hold())
        client.requests.clear()
        waiting = [asyncio.create_task(_hold_briefly(waiter, name)) for name in names]
        await asyncio.sleep(0.6)
        assert not any(task.done() for task in waiting)
        during = list(client.requests)
    await asyncio.wait_for(asyncio.gather(*waiting), 10)
    single = [r for r in during if r[0] == "GET" and "/_doc/" in r[1]]
    together = [r for r in during if r[1].endswith("/_mget")]
    # Alone, each wait re-reads its lease about eight times in 0.6 s (47-60 reads in all
    # measured). Waits that started together fall due together, and their re-reads go
    # in one `_mget` a round (16-19 reads in all measured).
    assert together and len(single) + len(together) <= 30, during


async def test_a_wait_reads_a_lease_found_held_only_after_a_backoff(
    managers: MakeManager,
) -> None:
    """A lease just found held (its create refused, or read held by `hold_all`'s probe)
    is not read again at once: it is never free a millisecond later, so that read
    only spent a request. The wait's first read comes after a backoff."""
    holder = await managers("worker-a@host-1")
    waiter = await managers("worker-b@host-2", counting=True)
    client = manager_client(waiter)

    def gaps(name: str) -> list[float]:
        """Seconds from each answer about the lease document `name` to its next read."""
        doc = "/" + quote(name, safe="")
        touching = [
            (sent, done, method) for sent, done, method, p in client.timeline if p.endswith(doc)
        ]
        return [later[0] - earlier[1] for earlier, later in pairwise(touching) if later[2] == "GET"]

    async with holder.lock("incident:inc-7").hold():
        waiting = asyncio.create_task(_hold_briefly(waiter, "incident:inc-7"))
        await asyncio.sleep(0.3)
        assert not waiting.done()
    await asyncio.wait_for(waiting, 10)
    assert min(gaps("incident:inc-7")) >= 0.004, client.timeline

    client.timeline.clear()
    names = ["lease:a", "lease:b", "lease:c"]
    async with holder.lock("lease:b").hold():
        waiting = asyncio.create_task(_hold_all_briefly(waiter, names))
        await asyncio.sleep(0.3)
        assert not waiting.done()
    await asyncio.wait_for(waiting, 10)
    # The bulk's refusal, the probe that may not wait, then the wait's reads: the
    # probe's read is followed by no second read at once.
    assert len(gaps("lease:b")) >= 2
    assert min(gaps("lease:b")[1:]) >= 0.004, client.timeline
