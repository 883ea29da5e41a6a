"""Correlation by several machines into one Elasticsearch store, without a global lock.

Each simulated machine has its own client, `ElasticsearchStore`,
`LeaseManager` and `ConcurrentCorrelator`; they share only the indices, as
workers on different hosts would. Races are real: nothing is mocked, and the
forced races below only choose *when* a competing correlation runs.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from elasticsearch import AsyncElasticsearch

from soc_agent.correlate import (
    ConcurrentCorrelator,
    CorrelationConfig,
    CorrelationContended,
    CorrelationResult,
    CorrelationState,
    Correlator,
    IncidentChanged,
    InMemoryCorrelationState,
    fingerprint,
)
from soc_agent.correlate.turns import KeyTurns
from soc_agent.errors import StoreError
from soc_agent.models import Alert, Entity, EntityType, Incident, Rule, Severity
from soc_agent.store.elasticsearch import ElasticsearchStore
from soc_agent.store.elasticsearch_leases import LeaseManager
from tests.infra.fixtures import needs
from tests.integration.store.counting import CountingClient

pytestmark = needs("elasticsearch")

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
RULES = [
    Rule(id="b0a1c2d3-7f3e-4e6a-9b1e-2c9f0e1a4d55", name="Suspicious PowerShell Encoded Command"),
    Rule(id="2f5e9c1a-0b7d-4c3e-8a61-f4d2b9e7c013", name="Outbound Connection to Tor Exit"),
    Rule(id="7c4a8d09-ca37-42b8-8f4e-1d2a3b4c5d6e", name="LSASS Memory Access"),
    Rule(id="e3b0c442-98fc-4c14-9afb-f4c8996fb924", name="Multiple Failed Logons"),
]
SEVERITIES = [Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL]


def _alert(
    alert_id: str,
    entities: list[Entity],
    *,
    rule: Rule = RULES[0],
    at: datetime = T0,
    severity: Severity = Severity.HIGH,
) -> Alert:
    return Alert(
        id=alert_id,
        format="ecs",
        vendor="elastic",
        product="elastic-security",
        source_id=alert_id.removeprefix("ecs:"),
        rule=rule,
        title=rule.name,
        severity=severity,
        created_at=at,
        received_at=at + timedelta(seconds=2),
        entities=entities,
        original={"kibana.alert.uuid": alert_id, "kibana.alert.rule.uuid": rule.id},
    )


def _host(n: int) -> Entity:
    return Entity(type=EntityType.HOST, value=f"wks-fin-{n:03d}", role="target")


def _user(n: int, j: int) -> Entity:
    return Entity(type=EntityType.USER, value=f"corp\\analyst{n}-{j}", role="actor")


def _ip(n: int, j: int) -> Entity:
    return Entity(type=EntityType.IP, value=f"10.20.{n}.{j + 10}", role="source")


@dataclass
class Machine:
    """One simulated host: its own client, store, leases and correlator."""

    store: ElasticsearchStore
    leases: LeaseManager
    correlator: ConcurrentCorrelator
    locks: CountingLocks


class CountingLocks:
    """The machine's real leases, counting how many correlations run inside them at once."""

    def __init__(self, leases: LeaseManager) -> None:
        self._leases = leases
        self.inside = 0
        self.most_inside = 0

    @asynccontextmanager
    async def hold_all(self, names: Iterable[str]) -> AsyncIterator[None]:
        async with self._leases.hold_all(names):
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
            try:
                yield
            finally:
                self.inside -= 1


MakeMachine = Callable[..., Awaitable[Machine]]


@pytest.fixture
async def machines(
    es_clients: Callable[[], AsyncElasticsearch], es_store: ElasticsearchStore, prefix: str
) -> AsyncIterator[MakeMachine]:
    made: list[Machine] = []

    async def make(
        view_factory: Callable[[ElasticsearchStore], Callable[[], CorrelationState]] | None = None,
        **options: int,
    ) -> Machine:
        """A machine; `view_factory(store)` replaces `store.correlation_view` to force races."""
        n = len(made)
        store = ElasticsearchStore(
            es_clients(), prefix=prefix, number_of_replicas=0, refresh_interval="100ms"
        )
        leases = LeaseManager(
            es_clients(), index=f"{prefix}-leases", owner=f"worker@host-{n}", number_of_replicas=0
        )
        await leases.ensure_index()
        locks = CountingLocks(leases)
        views = view_factory(store) if view_factory else store.correlation_view
        correlator = ConcurrentCorrelator(views, CorrelationConfig(), key_locks=locks, **options)
        made.append(Machine(store, leases, correlator, locks))
        return made[-1]

    yield make
    for machine in made:
        await machine.leases.aclose()


# -- the shared stream -----------------------------------------------------------------


def _stream(clusters: int, per_cluster: int, seed: int) -> tuple[list[Alert], list[Alert]]:
    """Seeds (one per cluster, holding all its pivots), then related alerts, interleaved.

    Every follow-up alert carries a random subset of its cluster's pivots, so
    the cluster's incident is reached through different keys at once. All
    times lie within one window, no incident fills up, and alerts sharing a
    fingerprint share a severity: the final incidents do not depend on the
    order of the follow-ups, so any interleaving must give the sequential result.
    """
    rng = random.Random(seed)
    seeds: list[Alert] = []
    follow_ups: list[Alert] = []
    for n in range(clusters):
        pivots = [_host(n), *(_user(n, j) for j in range(3)), *(_ip(n, j) for j in range(3))]
        seeds.append(_alert(f"ecs:seed-{n:02d}", pivots, at=T0 + timedelta(seconds=n)))
        for i in range(per_cluster):
            entities = rng.sample(pivots, rng.randint(1, 3))
            if rng.random() < 0.3:  # not a pivot: changes the fingerprint, never links
                entities.append(Entity(type=EntityType.PROCESS, value="rundll32.exe x.dll,Start"))
            alert = _alert(
                f"ecs:{n:02d}-{i:03d}",
                entities,
                rule=rng.choice(RULES),
                at=T0 + timedelta(seconds=rng.randint(0, 1800)),
            )
            # A function of the fingerprint, so whichever duplicate comes first agrees.
            severity = SEVERITIES[int(fingerprint(alert), 16) % len(SEVERITIES)]
            alert = alert.model_copy(update={"severity": severity})
            follow_ups.append(alert)
            if rng.random() < 0.1:  # redelivered by the broker
                follow_ups.append(alert)
    rng.shuffle(follow_ups)
    return seeds, follow_ups


async def _run_on(machines: list[Machine], alerts: list[Alert]) -> list[CorrelationResult]:
    """Deal the alerts round-robin to the machines; every machine runs its share at once."""

    async def share(machine: Machine, mine: list[Alert]) -> list[CorrelationResult]:
        bound = asyncio.Semaphore(16)  # what a worker's prefetch would allow in flight

        async def one(alert: Alert) -> CorrelationResult:
            async with bound:
                return await machine.correlator.correlate(alert)

        return await asyncio.gather(*(one(a) for a in mine))

    k = len(machines)
    shares = await asyncio.gather(*(share(m, alerts[i::k]) for i, m in enumerate(machines)))
    return [r for results in shares for r in results]


def _summary(incident: Incident, placed: set[str]) -> tuple[object, ...]:
    """What an order-independent comparison may look at."""
    return (
        incident.title,
        incident.severity,
        len(incident.alert_ids),
        incident.duplicate_count,
        frozenset(incident.alert_ids) | placed,
        frozenset(e.key for e in incident.entities),
        frozenset(incident.fingerprints),
        frozenset(incident.rules),
        incident.first_seen,
        incident.last_seen,
    )


async def test_machines_correlating_at_once_match_the_sequential_result(
    machines: MakeMachine, es_store: ElasticsearchStore
) -> None:
    fleet = [await machines() for _ in range(3)]
    seeds, follow_ups = _stream(clusters=6, per_cluster=25, seed=20261120)

    started = time.perf_counter()
    seeded = await _run_on(fleet, seeds)
    results = await _run_on(fleet, follow_ups)
    elapsed = time.perf_counter() - started

    reference_state = InMemoryCorrelationState()
    reference = Correlator(reference_state, CorrelationConfig())
    expected = [await reference.correlate(a) for a in [*seeds, *follow_ups]]

    incident_ids = sorted({r.incident.id for r in seeded})
    assert incident_ids == sorted(reference_state.incidents)
    distinct = {a.id: a for a in [*seeds, *follow_ups]}
    # No alert lost or placed twice: each is in exactly one incident, or counted as a duplicate.
    duplicates: dict[str, set[str]] = {i: set() for i in incident_ids}
    for result in [*seeded, *results]:
        if result.outcome == "duplicate":
            duplicates[result.incident.id].add(result.alert_id)
    stored = {i: await es_store.get_incident(i) for i in incident_ids}
    membership = [a for inc in stored.values() if inc for a in inc.alert_ids]
    assert len(membership) == len(set(membership))
    assert set(membership) | {a for d in duplicates.values() for a in d} == set(distinct)
    assert not set(membership) & {a for d in duplicates.values() for a in d}
    for alert_id, alert in distinct.items():
        owner = await es_store.get_alert_incident(alert_id)
        assert owner == reference_state.alerts[alert_id], alert_id
        assert (
            await es_store.get_fingerprint(fingerprint(alert))
            == (reference_state.fingerprints[fingerprint(alert)])
        )
    for key, owner in reference_state.entities.items():
        assert await es_store.find_by_entity(key) == owner, key
    # The incidents themselves, wherever the result does not depend on the order.
    ref_duplicates: dict[str, set[str]] = {i: set() for i in incident_ids}
    for result in expected:
        if result.outcome == "duplicate":
            ref_duplicates[result.incident.id].add(result.alert_id)
    for incident_id in incident_ids:
        incident = stored[incident_id]
        assert incident is not None
        assert _summary(incident, duplicates[incident_id]) == _summary(
            reference_state.incidents[incident_id], ref_duplicates[incident_id]
        )
    redelivered = sum(r.outcome == "redelivered" for r in results)
    assert redelivered == len(follow_ups) - len({a.id for a in follow_ups})
    # Alerts on disjoint keys really ran at once inside one machine (no process-wide lock).
    assert max(m.locks.most_inside for m in fleet) > 1
    retries = sum(m.correlator.retries for m in fleet)
    print(
        f"\n{len(seeds) + len(follow_ups)} alerts on 3 machines in {elapsed:.2f}s "
        f"({(len(seeds) + len(follow_ups)) / elapsed:.0f}/s), {retries} compare-and-set retries"
    )


# -- forced races ----------------------------------------------------------------------


async def test_a_view_refuses_to_overwrite_an_incident_changed_since_it_read_it(
    es_store: ElasticsearchStore,
) -> None:
    seed = _alert("ecs:seed", [_host(1), _user(1, 0)])
    incident = Incident(
        id="inc-1",
        title=seed.title,
        severity=Severity.HIGH,
        alert_ids=[seed.id],
        first_seen=T0,
        last_seen=T0,
    )
    await es_store.put_incident(incident)
    first, second = es_store.correlation_view(), es_store.correlation_view()
    read_first, read_second = await first.get_incident("inc-1"), await second.get_incident("inc-1")
    assert read_first == read_second == incident
    await first.put_incident(incident.model_copy(update={"alert_ids": [seed.id, "ecs:a"]}))
    with pytest.raises(IncidentChanged) as raised:
        await second.put_incident(incident.model_copy(update={"alert_ids": [seed.id, "ecs:b"]}))
    assert raised.value.incident_id == "inc-1"
    stored = await es_store.get_incident("inc-1")
    assert stored is not None and stored.alert_ids == [seed.id, "ecs:a"]
    # The winner's view knows its own write: it may write again.
    await first.put_incident(incident.model_copy(update={"duplicate_count": 1}))
    # A later read does not bless a write built from an earlier, stale one.
    await second.get_incident("inc-1")
    with pytest.raises(IncidentChanged):
        await second.put_incident(incident)


async def test_a_write_this_process_knows_is_stale_is_refused_without_a_request(
    elasticsearch_url: str, es_store: ElasticsearchStore, prefix: str
) -> None:
    """Two correlations of one process read an incident and the first grows it: the
    second's compare-and-set cannot pass, so it is not sent (nor the read a refusal
    makes). The same holds when this process read a newer version another one wrote."""
    client = CountingClient(elasticsearch_url, request_timeout=30)
    store = ElasticsearchStore(client, prefix=prefix, number_of_replicas=0)
    incident = Incident(
        id="inc-2", title="LSASS Memory Access", severity=Severity.HIGH,
        alert_ids=["ecs:seed"], first_seen=T0, last_seen=T0,
    )  # fmt: skip
    await es_store.put_incident(incident)
    try:
        first, second, third = (store.correlation_view() for _ in range(3))
        for view in (first, second, third):
            assert await view.get_incident("inc-2") == incident
        await first.put_incident(incident.model_copy(update={"alert_ids": ["ecs:seed", "ecs:a"]}))
        client.requests.clear()
        with pytest.raises(IncidentChanged):
            await second.put_incident(incident.model_copy(update={"duplicate_count": 1}))
        assert client.requests == []
        # Another process writes it; a fresh view of this one reads that version.
        await es_store.put_incident(incident.model_copy(update={"duplicate_count": 2}))
        assert await store.correlation_view().get_incident("inc-2") is not None
        client.requests.clear()
        with pytest.raises(IncidentChanged):
            await first.put_incident(incident.model_copy(update={"duplicate_count": 3}))
        assert client.requests == []
        stored = await es_store.get_incident("inc-2")
        assert stored is not None and stored.duplicate_count == 2
        # A view that read the newest version writes as before.
        fresh = store.correlation_view()
        assert await fresh.get_incident("inc-2") == stored
        await fresh.put_incident(stored.model_copy(update={"duplicate_count": 4}))
        assert client.sent("PUT", "/_doc/inc-2") == 1
    finally:
        await client.close()


async def test_a_view_creates_only_what_it_saw_absent_or_never_read(
    es_store: ElasticsearchStore,
) -> None:
    incident = Incident(
        id="inc-new", title="LSASS Memory Access", severity=Severity.CRITICAL, first_seen=T0,
        last_seen=T0,
    )  # fmt: skip
    grown = incident.model_copy(update={"alert_ids": ["ecs:late"]})
    saw_absent = es_store.correlation_view()
    assert await saw_absent.get_incident("inc-new") is None
    never_read = es_store.correlation_view()
    await never_read.put_incident(incident)
    assert await es_store.get_incident("inc-new") is None  # created with the index writes
    await never_read.flush()
    assert await es_store.get_incident("inc-new") == incident
    await saw_absent.put_incident(grown)
    with pytest.raises(IncidentChanged):
        await saw_absent.flush()
    unread = es_store.correlation_view()
    await unread.put_incident(grown)
    with pytest.raises(IncidentChanged):
        await unread.flush()
    # Exactly what is stored already (a client retry of a write that had landed): done.
    await saw_absent.put_incident(incident)
    await saw_absent.flush()
    assert await es_store.get_incident("inc-new") == incident


async def test_view_writes_do_not_wait_for_a_refresh(slow_es_store: ElasticsearchStore) -> None:
    slow = slow_es_store
    incident = Incident(
        id="inc-fast", title="Outbound Connection to Tor Exit", severity=Severity.HIGH,
        first_seen=T0, last_seen=T0,
    )  # fmt: skip
    started = time.perf_counter()
    view = slow.correlation_view()
    await view.put_incident(incident)
    await view.flush()  # a new incident is created with the index writes
    assert time.perf_counter() - started < 5  # `wait_for` would wait for the 30 s refresh
    assert await slow.correlation_view().get_incident("inc-fast") == incident  # real-time GET
    # A search refreshes first, so it sees the write without anyone having waited.
    assert await slow.list_incidents() == [incident]


class _CompeteBeforePut:
    """A real view whose `put_incident` first lets `compete` change the store."""

    def __init__(self, view: CorrelationState, compete: Callable[[], Awaitable[None]]) -> None:
        self._view = view
        self._compete = compete

    async def put_incident(self, incident: Incident) -> None:
        await self._compete()
        await self._view.put_incident(incident)

    def __getattr__(self, name: str) -> object:
        return getattr(self._view, name)


def _competing(compete: Callable[[], Awaitable[None]]) -> Callable[..., object]:
    def views(store: ElasticsearchStore) -> Callable[[], object]:
        return lambda: _CompeteBeforePut(store.correlation_view(), compete)

    return views


async def test_correlation_retries_when_its_incident_changed_through_another_key(
    machines: MakeMachine, es_store: ElasticsearchStore
) -> None:
    seed = _alert("ecs:seed", [_host(7), _user(7, 0)], rule=RULES[2])
    by_host = _alert("ecs:by-host", [_host(7)], rule=RULES[0], at=T0 + timedelta(minutes=3))
    by_user = _alert("ecs:by-user", [_user(7, 0)], rule=RULES[3], at=T0 + timedelta(minutes=4))
    other = await machines()
    opened = await other.correlator.correlate(seed)
    raced: list[CorrelationResult] = []

    async def compete() -> None:
        if not raced:
            # Disjoint keys (user vs host): the leases let it through; the CAS must catch it.
            raced.append(await other.correlator.correlate(by_user))

    racer = await machines(_competing(compete))
    result = await racer.correlator.correlate(by_host)

    assert [r.outcome for r in raced] == ["grouped"]
    assert (result.outcome, racer.correlator.retries) == ("grouped", 1)
    stored = await es_store.get_incident(opened.incident.id)
    assert stored is not None
    assert stored.alert_ids == [seed.id, by_user.id, by_host.id]  # neither write was lost
    assert stored.rules == [f"ecs:{RULES[i].id}" for i in (2, 3, 0)]
    assert await es_store.get_alert_incident(by_host.id) == opened.incident.id


async def test_correlation_gives_up_after_max_attempts_having_written_nothing(
    machines: MakeMachine, es_store: ElasticsearchStore
) -> None:
    seed = _alert("ecs:seed", [_host(8), _user(8, 0)])
    late = _alert("ecs:late", [_host(8)], rule=RULES[1], at=T0 + timedelta(minutes=1))
    other = await machines()
    opened = await other.correlator.correlate(seed)

    async def compete() -> None:
        current = await es_store.get_incident(opened.incident.id)
        assert current is not None
        await es_store.put_incident(current)  # same content, new version: a conflict anyway

    racer = await machines(_competing(compete), max_attempts=3)
    with pytest.raises(CorrelationContended, match="ecs:late") as raised:
        await racer.correlator.correlate(late)

    assert (raised.value.attempts, racer.correlator.retries) == (3, 2)
    assert isinstance(raised.value.__cause__, IncidentChanged)
    assert await es_store.get_alert_incident(late.id) is None
    assert await es_store.get_fingerprint(fingerprint(late)) is None
    stored = await es_store.get_incident(opened.incident.id)
    assert stored is not None and stored.alert_ids == [seed.id]
    assert racer.leases.held == frozenset()


async def test_a_correlation_reads_the_incidents_it_expects_with_the_index_entries(
    elasticsearch_url: str, es_store: ElasticsearchStore, prefix: str, machines: MakeMachine
) -> None:
    client = CountingClient(elasticsearch_url, request_timeout=30)
    store = ElasticsearchStore(client, prefix=prefix, number_of_replicas=0)
    correlator = ConcurrentCorrelator(
        store.correlation_view, CorrelationConfig(), key_locks=KeyTurns()
    )

    def mgets() -> int:
        return sum(1 for _, path in client.requests if path.endswith("/_mget"))

    try:
        first = await correlator.correlate(_alert("ecs:a1", [_host(1)]))
        # A new incident is created in the bulk of index writes: no request of its own.
        assert first.outcome == "new"
        assert client.requests == [("POST", "/_mget"), ("PUT", "/_bulk")]
        client.requests.clear()
        at = T0 + timedelta(minutes=1)
        second = await correlator.correlate(_alert("ecs:a2", [_host(1)], rule=RULES[1], at=at))
        assert (second.outcome, second.incident.id) == ("grouped", first.incident.id)
        assert mgets() == 1  # the host's incident came with its index entry
        # Another machine gives the host a new incident (the first one's window is over):
        # the guess is wrong, and a second read fetches the incident it names now.
        late = T0 + timedelta(hours=3)
        moved = await (await machines()).correlator.correlate(_alert("ecs:b1", [_host(1)], at=late))
        assert moved.outcome == "new"
        client.requests.clear()
        third = await correlator.correlate(
            _alert("ecs:a3", [_host(1)], rule=RULES[2], at=late + timedelta(minutes=1))
        )
        assert (third.outcome, third.incident.id) == ("grouped", moved.incident.id)
        assert mgets() == 2
    finally:
        await client.close()


async def test_a_placed_alert_hands_its_incidents_lease_to_the_decision_that_follows(
    es_clients: Callable[[], AsyncElasticsearch], es_store: ElasticsearchStore, prefix: str
) -> None:
    from soc_agent.runtime.backend import incident_lock_name

    leases = LeaseManager(
        es_clients(), index=f"{prefix}-leases", owner="worker@host-0", number_of_replicas=0
    )
    await leases.ensure_index()
    correlator = ConcurrentCorrelator(
        es_store.correlation_view,
        CorrelationConfig(),
        key_locks=leases,
        hand_over=incident_lock_name,
    )
    try:
        alert = _alert("ecs:h1", [_host(5)])
        placed = await correlator.correlate(alert)
        lease = incident_lock_name(placed.incident.id)
        assert placed.outcome == "new" and leases.held == {lease}  # taken as the keys went
        async with leases.lock(lease).hold(wait=False) as adopted:
            assert adopted
        again = await correlator.correlate(alert)
        assert again.outcome == "redelivered" and leases.held == frozenset()  # no decision
    finally:
        await leases.aclose()


async def test_an_alert_is_not_marked_placed_beside_index_writes_that_failed(
    es: AsyncElasticsearch, es_store: ElasticsearchStore
) -> None:
    correlator = _in_process(es_store)
    alert = _alert("ecs:x1", [_host(9)])
    # Its writes in the bulk fail.
    await _correlate_refused(es, es_store.index("corr-entities"), correlator, alert, "refused")
    # The alert's entry went in the same bulk and was taken back, as when it was the
    # write after the bulk: the alert is not marked placed, and its redelivery finds it
    # in the incident written first.
    assert await es_store.get_alert_incident(alert.id) is None
    again = await correlator.correlate(alert)
    assert again.outcome == "redelivered" and alert.id in again.incident.alert_ids


async def test_a_refused_new_incident_leaves_the_alert_unplaced_and_unsaved(
    es: AsyncElasticsearch, es_store: ElasticsearchStore
) -> None:
    correlator = _in_process(es_store)
    alert = _alert("ecs:y1", [_host(8)])
    # The create in the bulk fails.
    await _correlate_refused(es, es_store.index("incidents"), correlator, alert, "not created")
    # The entries written beside it name an incident that is not there, which reads as no
    # entry; the alert is neither marked placed nor saved, and its redelivery opens it.
    assert await es_store.find_by_entity(_host(8).key) is not None
    assert await es_store.get_alert_incident(alert.id) is None
    assert await es_store.get_alert(alert.id) is None
    again = await correlator.correlate(alert)
    assert again.outcome == "new" and again.incident.alert_ids == [alert.id]
    assert await es_store.get_incident(again.incident.id) == again.incident


def _in_process(store: ElasticsearchStore) -> ConcurrentCorrelator:
    """A correlator on `store` whose key locks are this process's alone."""
    return ConcurrentCorrelator(store.correlation_view, CorrelationConfig(), key_locks=KeyTurns())


async def _correlate_refused(
    es: AsyncElasticsearch, index: str, correlator: ConcurrentCorrelator, alert: Alert, why: str
) -> None:
    """Correlate `alert` while `index` refuses writes; the correlation must fail for `why`."""
    await es.indices.add_block(index=index, block="write")
    try:
        with pytest.raises(StoreError, match=why):
            await correlator.correlate(alert)
    finally:
        await es.indices.put_settings(index=index, settings={"index.blocks.write": False})
