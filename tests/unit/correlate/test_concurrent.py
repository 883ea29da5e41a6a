"""ConcurrentCorrelator over an in-memory versioned state: locks, retries, same rules.

`VersionedView` is a reference implementation of the contract a shared store
offers (`ElasticsearchStore.correlation_view()` on a real node is tested in
tests/integration/store/test_concurrent_correlation.py): an incident write
succeeds only if the incident is still at the version this view first read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from hypothesis import given, settings

from soc_agent.correlate import (
    ConcurrentCorrelator,
    CorrelationConfig,
    CorrelationContended,
    CorrelationResult,
    Correlator,
    IncidentChanged,
    InMemoryCorrelationState,
    fingerprint,
)
from soc_agent.models import Alert, Entity, EntityType, Incident
from tests.unit.correlate.test_correlation import (
    C2_IP,
    HOST,
    POWERSHELL,
    RESOLVER,
    SRC_IP,
    T0,
    USER,
    build_alert,
)
from tests.unit.correlate.test_correlation_properties import alert_streams, configs


class VersionedState(InMemoryCorrelationState):
    """The shared state: an in-memory state that counts writes per incident."""

    def __init__(self) -> None:
        super().__init__()
        self.versions: dict[str, int] = {}

    async def put_incident(self, incident: Incident) -> None:
        await super().put_incident(incident)
        self.versions[incident.id] = self.versions.get(incident.id, 0) + 1

    def view(self) -> VersionedView:
        return VersionedView(self)


class VersionedView:
    """One correlation's view: incident writes are compare-and-set on the first read."""

    def __init__(self, shared: VersionedState) -> None:
        self._shared = shared
        self._seen: dict[str, int | None] = {}

    async def get_incident(self, incident_id: str) -> Incident | None:
        self._seen.setdefault(incident_id, self._shared.versions.get(incident_id))
        return await self._shared.get_incident(incident_id)

    async def put_incident(self, incident: Incident) -> None:
        if self._shared.versions.get(incident.id) != self._seen.get(incident.id):
            raise IncidentChanged(incident.id)
        await self._shared.put_incident(incident)
        self._seen[incident.id] = self._shared.versions[incident.id]

    def __getattr__(self, name: str) -> object:
        return getattr(self._shared, name)


class RecordingLocks:
    """In-process key locks (sorted, one asyncio.Lock per name) recording what was asked."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self.requests: list[list[str]] = []

    @asynccontextmanager
    async def hold_all(self, names: Iterable[str]) -> AsyncIterator[None]:
        ordered = sorted(set(names))
        self.requests.append(ordered)
        held: list[asyncio.Lock] = []
        try:
            for name in ordered:
                lock = self._locks.setdefault(name, asyncio.Lock())
                await lock.acquire()
                held.append(lock)
            yield
        finally:
            for lock in reversed(held):
                lock.release()


def concurrent(
    shared: VersionedState,
    views: Callable[[], object] | None = None,
    **config: object,
) -> tuple[ConcurrentCorrelator, RecordingLocks]:
    locks = RecordingLocks()
    max_attempts = config.pop("max_attempts", 10)
    correlator = ConcurrentCorrelator(
        views or shared.view,  # type: ignore[arg-type]
        CorrelationConfig(**config),  # type: ignore[arg-type]
        key_locks=locks,
        max_attempts=max_attempts,  # type: ignore[arg-type]
    )
    return correlator, locks


class CompeteBeforePut(VersionedView):
    """A view whose incident write first lets `compete` change the shared state."""

    def __init__(self, shared: VersionedState, compete: Callable[[], Awaitable[None]]) -> None:
        super().__init__(shared)
        self._compete = compete

    async def put_incident(self, incident: Incident) -> None:
        await self._compete()
        await super().put_incident(incident)


async def test_locks_cover_the_fingerprint_and_every_pivot_and_nothing_else() -> None:
    shared = VersionedState()
    corr, locks = concurrent(shared, ignore_values=[RESOLVER.key])
    alert = build_alert(entities=[HOST, USER, POWERSHELL, RESOLVER])

    await corr.correlate(alert)

    expected = [f"fp:{fingerprint(alert)}", f"entity:{HOST.key}", f"entity:{USER.key}"]
    assert locks.requests == [sorted(expected)]
    # Every index entry written is under one of those locks.
    written = {f"entity:{k}" for k in shared.entities} | {f"fp:{f}" for f in shared.fingerprints}
    assert written <= set(locks.requests[0])


async def test_a_concurrent_change_through_another_key_is_retried_not_lost() -> None:
    shared = VersionedState()
    seed_corr, _ = concurrent(shared)
    seed = await seed_corr.correlate(build_alert(rule="lsass", entities=[HOST, USER]))
    by_user = build_alert(rule="brute", entities=[USER], at=T0 + timedelta(minutes=2))
    by_host = build_alert(rule="c2_beacon", entities=[HOST, C2_IP], at=T0 + timedelta(minutes=3))
    competed: list[CorrelationResult] = []

    async def compete() -> None:
        if not competed:
            competed.append(await seed_corr.correlate(by_user))

    corr, _ = concurrent(shared, lambda: CompeteBeforePut(shared, compete))
    result = await corr.correlate(by_host)

    assert corr.retries == 1
    assert result.outcome == "grouped"
    assert shared.incidents[seed.incident.id].alert_ids == [seed.alert_id, by_user.id, by_host.id]
    assert shared.entities[C2_IP.key] == seed.incident.id
    assert shared.alerts[by_host.id] == seed.incident.id


async def test_a_new_incident_created_meanwhile_is_retried_as_a_redelivery() -> None:
    shared = VersionedState()
    alert = build_alert(entities=[HOST])
    other, _ = concurrent(shared)
    competed: list[CorrelationResult] = []

    async def compete() -> None:
        if not competed:
            # The same alert, delivered twice, reaches the store first elsewhere
            # (a lock that expired under a stalled holder).
            competed.append(await other.correlate(alert))

    corr, _ = concurrent(shared, lambda: CompeteBeforePut(shared, compete))
    result = await corr.correlate(alert)

    assert (competed[0].outcome, result.outcome, corr.retries) == ("new", "redelivered", 1)
    assert shared.incidents[result.incident.id].alert_ids == [alert.id]


async def test_gives_up_with_a_clear_error_and_writes_nothing() -> None:
    shared = VersionedState()
    seed_corr, _ = concurrent(shared)
    seed = await seed_corr.correlate(build_alert(entities=[HOST, USER]))
    late = build_alert(rule="brute", entities=[HOST, SRC_IP], at=T0 + timedelta(minutes=1))

    async def compete() -> None:
        current = shared.incidents[seed.incident.id]
        await shared.put_incident(current)  # a new version every time

    corr, _ = concurrent(shared, lambda: CompeteBeforePut(shared, compete), max_attempts=4)
    with pytest.raises(CorrelationContended, match=rf"alert {late.id}: incident .* 4 attempts"):
        await corr.correlate(late)

    assert corr.retries == 3
    assert late.id not in shared.alerts
    assert SRC_IP.key not in shared.entities
    assert fingerprint(late) not in shared.fingerprints
    assert shared.incidents[seed.incident.id].alert_ids == [seed.alert_id]


async def test_alerts_on_disjoint_keys_are_correlated_at_the_same_time() -> None:
    shared = VersionedState()
    both_inside = asyncio.Barrier(2)

    class MeetInside(VersionedView):
        async def find_by_entity(self, entity_key: str) -> str | None:
            # Returns only once both correlations are inside the rules at once:
            # a process-wide lock around them would never let the second in.
            await both_inside.wait()
            return await self._shared.find_by_entity(entity_key)

    corr, _ = concurrent(shared, lambda: MeetInside(shared))
    first = build_alert(entities=[HOST])
    second = build_alert(rule="c2_beacon", entities=[C2_IP])

    results = await asyncio.wait_for(
        asyncio.gather(corr.correlate(first), corr.correlate(second)), timeout=5
    )

    assert [r.outcome for r in results] == ["new", "new"]


def test_max_attempts_must_allow_one_attempt() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        concurrent(VersionedState(), max_attempts=0)


@settings(max_examples=100, deadline=None)
@given(alerts=alert_streams(), config=configs)
def test_same_rules_as_the_serial_correlator(
    alerts: list[Alert], config: CorrelationConfig
) -> None:
    async def run() -> None:
        reference_state = InMemoryCorrelationState()
        reference = Correlator(reference_state, config)
        shared = VersionedState()
        corr = ConcurrentCorrelator(shared.view, config, key_locks=RecordingLocks())
        for alert in alerts:
            expected, got = await reference.correlate(alert), await corr.correlate(alert)
            assert (got.outcome, got.incident, got.new_information) == (
                expected.outcome,
                expected.incident,
                expected.new_information,
            )
        assert shared.incidents == reference_state.incidents
        assert shared.entities == reference_state.entities
        assert shared.fingerprints == reference_state.fingerprints
        assert corr.retries == 0

    asyncio.run(run())


class YieldingView(VersionedView):
    """A view that yields to the loop on each read, as a view over a network store does."""

    async def get_incident(self, incident_id: str) -> Incident | None:
        incident = await super().get_incident(incident_id)  # its version noted
        await asyncio.sleep(0)
        return incident


async def test_many_alerts_reaching_one_incident_through_distinct_keys_all_land() -> None:
    # One incident owns 40 hosts; 40 alerts, one per host, hold disjoint key locks and all
    # write that incident at once. Each compare-and-set round has one winner: retrying
    # at once, the losers would keep colliding until one ran out of attempts.
    shared = VersionedState()
    hosts = [Entity(type=EntityType.HOST, value=f"wks-{i:02d}") for i in range(40)]
    corr, _ = concurrent(shared, lambda: YieldingView(shared))
    seed = await corr.correlate(build_alert(entities=hosts))
    alerts = [
        build_alert(rule="brute", entities=[host], at=T0 + timedelta(seconds=i + 1))
        for i, host in enumerate(hosts)
    ]

    results = await asyncio.gather(*(corr.correlate(a) for a in alerts))

    assert {r.incident.id for r in results} == {seed.incident.id}
    held = shared.incidents[seed.incident.id].alert_ids
    assert sorted(held) == sorted([seed.alert_id, *(a.id for a in alerts)])
