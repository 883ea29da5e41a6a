"""Properties of correlation over random alert streams: redelivery, determinism, accounting."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from soc_agent.correlate import (
    CorrelationConfig,
    CorrelationResult,
    Correlator,
    InMemoryCorrelationState,
)
from soc_agent.models import Alert, Entity, EntityType, Rule, Severity

T0 = datetime(2024, 11, 5, 8, 0, tzinfo=UTC)

POOL = [
    Entity(type=EntityType.HOST, value="wks-fin-042"),
    Entity(type=EntityType.HOST, value="wks-hr-007"),
    Entity(type=EntityType.HOST, value="srv-dc-01.corp.example.com"),
    Entity(type=EntityType.USER, value="j.doe"),
    Entity(type=EntityType.USER, value="svc_backup"),
    Entity(type=EntityType.IP, value="10.20.30.41"),
    Entity(type=EntityType.IP, value="185.220.101.7"),
    Entity(type=EntityType.IP, value="8.8.8.8"),
    Entity(type=EntityType.DOMAIN, value="update-check.badcdn.net"),
    Entity(
        type=EntityType.FILE_HASH,
        value="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    ),
    Entity(type=EntityType.PROCESS, value="rundll32.exe C:\\Users\\Public\\x.dll,Start"),
]
RULES = [
    Rule(id="b0a1c2d3-7f3e-4e6a-9b1e-2c9f0e1a4d55", name="Suspicious PowerShell Encoded Command"),
    Rule(id="2f5e9c1a-0b7d-4c3e-8a61-f4d2b9e7c013", name="Outbound Connection to Tor Exit"),
    Rule(name="ET MALWARE Cobalt Strike Beacon Observed"),
]


@st.composite
def alert_streams(draw: st.DrawFn) -> list[Alert]:
    n = draw(st.integers(min_value=1, max_value=25))
    alerts: list[Alert] = []
    for i in range(n):
        if alerts and draw(st.integers(0, 9)) == 0:
            alerts.append(draw(st.sampled_from(alerts)))  # redelivered within the stream
            continue
        rule = draw(st.sampled_from(RULES))
        alerts.append(
            Alert(
                id=f"suricata:1731{i:06d}",
                format="suricata_eve" if rule.id is None else "ecs",
                vendor="oisf" if rule.id is None else "elastic",
                product="suricata" if rule.id is None else "elastic-security",
                rule=rule,
                title=rule.name,
                severity=draw(st.sampled_from(list(Severity))),
                created_at=T0 + timedelta(minutes=draw(st.integers(0, 300))),
                entities=draw(st.lists(st.sampled_from(POOL), max_size=4)),
                original={"alert": {"signature": rule.name}},
            )
        )
    return alerts


configs = st.builds(
    CorrelationConfig,
    window_seconds=st.sampled_from([600, 3600]),
    duplicate_window_seconds=st.sampled_from([0, 300, 3600, 7200]),
    ignore_values=st.sampled_from([[], ["ip:8.8.8.8"]]),
)


def _run(correlator: Correlator, alerts: list[Alert]) -> list[CorrelationResult]:
    async def feed() -> list[CorrelationResult]:
        return [await correlator.correlate(alert) for alert in alerts]

    return asyncio.run(feed())


def _snapshot(state: InMemoryCorrelationState) -> tuple[object, ...]:
    return (
        {k: v.model_dump() for k, v in state.incidents.items()},
        dict(state.entities),
        dict(state.fingerprints),
        dict(state.alerts),
    )


@settings(max_examples=150, deadline=None)
@given(alerts=alert_streams(), config=configs, order=st.randoms(use_true_random=False))
def test_redelivering_the_stream_changes_no_incident(
    alerts: list[Alert], config: CorrelationConfig, order: random.Random
) -> None:
    state = InMemoryCorrelationState()
    correlator = Correlator(state, config)
    _run(correlator, alerts)
    before = _snapshot(state)

    again = list(alerts)
    order.shuffle(again)
    results = _run(correlator, again)

    assert {r.outcome for r in results} == {"redelivered"}
    assert _snapshot(state) == before


@settings(max_examples=100, deadline=None)
@given(alerts=alert_streams(), config=configs)
def test_same_stream_same_incidents(alerts: list[Alert], config: CorrelationConfig) -> None:
    a, b = InMemoryCorrelationState(), InMemoryCorrelationState()
    outcomes_a = [r.outcome for r in _run(Correlator(a, config), alerts)]
    outcomes_b = [r.outcome for r in _run(Correlator(b, config), alerts)]
    assert outcomes_a == outcomes_b
    assert _snapshot(a) == _snapshot(b)


@settings(max_examples=150, deadline=None)
@given(alerts=alert_streams(), config=configs)
def test_every_alert_is_accounted_for_exactly_once(
    alerts: list[Alert], config: CorrelationConfig
) -> None:
    state = InMemoryCorrelationState()
    results = _run(Correlator(state, config), alerts)
    distinct = {a.id for a in alerts}

    placed = [aid for inc in state.incidents.values() for aid in inc.alert_ids]
    duplicates = sum(inc.duplicate_count for inc in state.incidents.values())
    assert len(placed) == len(set(placed))  # no alert in two incidents or twice in one
    assert len(placed) + duplicates == len(distinct)
    assert set(state.alerts) == distinct
    for result in results:
        incident = state.incidents[state.alerts[result.alert_id]]
        if result.outcome in ("new", "grouped"):
            assert result.alert_id in incident.alert_ids
        for alert in alerts:
            if alert.id in incident.alert_ids:
                assert incident.first_seen <= alert.created_at <= incident.last_seen
                assert incident.severity.rank >= alert.severity.rank


@settings(max_examples=60, deadline=None)
@given(alerts=alert_streams(), config=configs)
def test_the_sqlite_store_correlates_exactly_as_the_reference(
    alerts: list[Alert], config: CorrelationConfig
) -> None:
    """The store reads what a correlation needs in one round trip and writes its result in
    one transaction; the incidents and every index must be the reference's."""
    import tempfile
    from pathlib import Path

    from soc_agent.store import SQLiteStore

    reference = InMemoryCorrelationState()
    expected = _run(Correlator(reference, config), alerts)
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "s.db")
        try:
            got = _run(Correlator(store, config), alerts)

            async def read_back() -> tuple[object, ...]:
                incidents = {i: await store.get_incident(i) for i in reference.incidents}
                return (
                    {k: v.model_dump() if v else None for k, v in incidents.items()},
                    {k: await store.find_by_entity(k) for k in reference.entities},
                    {k: await store.get_fingerprint(k) for k in reference.fingerprints},
                    {k: await store.get_alert_incident(k) for k in reference.alerts},
                )

            stored = asyncio.run(read_back())
        finally:
            store.close()
    assert [(r.outcome, r.incident.id) for r in got] == [
        (r.outcome, r.incident.id) for r in expected
    ]
    assert stored == _snapshot(reference)


@settings(max_examples=60, deadline=None)
@given(alerts=alert_streams(), config=configs)
def test_concurrent_correlations_on_sqlite_equal_a_serial_run(
    alerts: list[Alert], config: CorrelationConfig
) -> None:
    """Every alert of the stream correlated at once, in one process, without a global lock:
    related alerts take turns on their keys and an incident written under a correlation
    that read it sends that one round again. The result must be the reference's for the
    order in which the correlations finished, and related alerts (a shared fingerprint or
    pivot) must keep their arrival order."""
    import tempfile
    from pathlib import Path

    from soc_agent.correlate.fingerprint import fingerprint
    from soc_agent.store import SQLiteStore

    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "s.db")
        try:
            correlator = Correlator(store, config)
            finished: list[int] = []

            async def one(i: int) -> CorrelationResult:
                result = await correlator.correlate(alerts[i])
                finished.append(i)
                return result

            async def feed() -> list[CorrelationResult]:
                return list(await asyncio.gather(*(one(i) for i in range(len(alerts)))))

            got = asyncio.run(feed())

            async def read_back(reference: InMemoryCorrelationState) -> tuple[object, ...]:
                incidents = {i: await store.get_incident(i) for i in reference.incidents}
                return (
                    {k: v.model_dump() if v else None for k, v in incidents.items()},
                    {k: await store.find_by_entity(k) for k in reference.entities},
                    {k: await store.get_fingerprint(k) for k in reference.fingerprints},
                    {k: await store.get_alert_incident(k) for k in reference.alerts},
                )

            reference = InMemoryCorrelationState()
            expected = _run(Correlator(reference, config), [alerts[i] for i in finished])
            stored = asyncio.run(read_back(reference))
        finally:
            store.close()
    assert [(got[i].outcome, got[i].incident.id) for i in finished] == [
        (r.outcome, r.incident.id) for r in expected
    ]
    assert stored == _snapshot(reference)
    keys = [{fingerprint(a), *correlator.pivots(a)} for a in alerts]
    position = {i: n for n, i in enumerate(finished)}
    for i in range(len(alerts)):
        for j in range(i + 1, len(alerts)):
            if keys[i] & keys[j]:
                assert position[i] < position[j], (i, j)
