"""Correlation: new, grouped, duplicate and redelivered alerts, windows, pivots."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from soc_agent.correlate import (
    DEFAULT_PIVOT_TYPES,
    CorrelationConfig,
    Correlator,
    InMemoryCorrelationState,
    default_incident_id,
    fingerprint,
)
from soc_agent.models import Alert, Entity, EntityType, Rule, Severity

T0 = datetime(2024, 11, 5, 9, 14, 27, tzinfo=UTC)

HOST = Entity(type=EntityType.HOST, value="WKS-FIN-042", role="target")
USER = Entity(type=EntityType.USER, value="corp\\j.doe", role="actor")
SRC_IP = Entity(type=EntityType.IP, value="10.20.30.41", role="source")
C2_IP = Entity(type=EntityType.IP, value="185.220.101.7", role="destination")
RESOLVER = Entity(type=EntityType.IP, value="8.8.8.8", role="destination")
SHA256 = Entity(
    type=EntityType.FILE_HASH,
    value="9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08",
    attributes={"algorithm": "sha256"},
)
POWERSHELL = Entity(
    type=EntityType.PROCESS,
    value="powershell.exe -NoP -W Hidden -Enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQA",
    attributes={"pid": "6184"},
)
OTHER_HOST = Entity(type=EntityType.HOST, value="srv-dc-01.corp.example.com", role="target")
OTHER_USER = Entity(type=EntityType.USER, value="svc_backup", role="actor")

RULES = {
    "encoded_ps": Rule(
        id="b0a1c2d3-7f3e-4e6a-9b1e-2c9f0e1a4d55", name="Suspicious PowerShell Encoded Command"
    ),
    "c2_beacon": Rule(
        id="2f5e9c1a-0b7d-4c3e-8a61-f4d2b9e7c013", name="Outbound Connection to Tor Exit"
    ),
    "lsass": Rule(id="7c4a8d09-ca37-42b8-8f4e-1d2a3b4c5d6e", name="LSASS Memory Access"),
    "brute": Rule(id="e3b0c442-98fc-4c14-9afb-f4c8996fb924", name="Multiple Failed Logons"),
}

_counter = [0]


def build_alert(
    *,
    rule: str = "encoded_ps",
    entities: list[Entity] | None = None,
    at: datetime = T0,
    severity: Severity = Severity.HIGH,
    alert_id: str | None = None,
    title: str | None = None,
) -> Alert:
    """An Elastic Security alert; a fresh vendor id unless `alert_id` is given."""
    if alert_id is None:
        _counter[0] += 1
        alert_id = f"ecs:4f1c9a{_counter[0]:010d}e2b7"
    the_rule = RULES[rule]
    original: dict[str, Any] = {
        "kibana.alert.uuid": alert_id.removeprefix("ecs:"),
        "kibana.alert.rule.uuid": the_rule.id,
        "kibana.alert.rule.name": the_rule.name,
        "@timestamp": at.isoformat(),
    }
    return Alert(
        id=alert_id,
        format="ecs",
        vendor="elastic",
        product="elastic-security",
        rule=the_rule,
        title=the_rule.name if title is None else title,
        severity=severity,
        created_at=at,
        received_at=at + timedelta(seconds=3),
        entities=list(entities if entities is not None else [HOST, USER, POWERSHELL]),
        techniques=["T1059.001"],
        original=original,
    )


def correlator(
    state: InMemoryCorrelationState | None = None, **config: Any
) -> tuple[Correlator, InMemoryCorrelationState]:
    state = state if state is not None else InMemoryCorrelationState()
    return Correlator(state, CorrelationConfig(**config)), state


# -- the four outcomes ---------------------------------------------------------------


async def test_first_alert_opens_a_new_incident() -> None:
    corr, state = correlator()
    alert = build_alert(entities=[HOST, USER, POWERSHELL], severity=Severity.HIGH)

    result = await corr.correlate(alert)

    assert result.outcome == "new"
    assert result.alert_id == alert.id
    inc = result.incident
    assert inc.id == "inc-" + hashlib.sha256(alert.id.encode()).hexdigest()[:16]
    assert inc.title == "Suspicious PowerShell Encoded Command"
    assert inc.severity is Severity.HIGH
    assert inc.alert_ids == [alert.id]
    assert [e.key for e in inc.entities] == [HOST.key, USER.key, POWERSHELL.key]
    assert inc.fingerprints == [fingerprint(alert)]
    assert inc.first_seen == inc.last_seen == T0
    assert inc.duplicate_count == 0
    assert await state.get_incident(inc.id) == inc
    assert await state.find_by_entity("host:wks-fin-042") == inc.id
    assert await state.get_fingerprint(fingerprint(alert)) == (inc.id, T0)
    assert await state.get_alert_incident(alert.id) == inc.id


async def test_empty_title_falls_back_to_the_rule_name() -> None:
    corr, _ = correlator()
    result = await corr.correlate(build_alert(title=""))
    assert result.incident.title == "Suspicious PowerShell Encoded Command"


async def test_related_alert_is_grouped_into_the_open_incident() -> None:
    corr, state = correlator()
    first = await corr.correlate(
        build_alert(rule="encoded_ps", entities=[HOST, USER, POWERSHELL], severity=Severity.MEDIUM)
    )
    beacon = build_alert(
        rule="c2_beacon",
        entities=[HOST, SRC_IP, C2_IP],
        at=T0 + timedelta(minutes=7),
        severity=Severity.CRITICAL,
    )

    result = await corr.correlate(beacon)

    assert result.outcome == "grouped"
    inc = result.incident
    assert inc.id == first.incident.id
    assert inc.alert_ids == [first.alert_id, beacon.id]
    assert [e.key for e in inc.entities] == [
        HOST.key, USER.key, POWERSHELL.key, SRC_IP.key, C2_IP.key,
    ]  # fmt: skip
    assert inc.severity is Severity.CRITICAL  # max of medium and critical
    assert inc.first_seen == T0
    assert inc.last_seen == T0 + timedelta(minutes=7)
    assert inc.fingerprints == [fingerprint(build_alert()), fingerprint(beacon)]
    assert inc.title == first.incident.title  # the first alert names the incident
    # the new pivots lead to the incident too
    assert await state.find_by_entity(C2_IP.key) == inc.id
    assert await state.find_by_entity(SRC_IP.key) == inc.id
    assert await state.get_incident(inc.id) == inc


async def test_grouping_never_lowers_severity() -> None:
    corr, _ = correlator()
    await corr.correlate(build_alert(rule="lsass", entities=[HOST], severity=Severity.CRITICAL))
    result = await corr.correlate(
        build_alert(
            rule="brute", entities=[HOST], severity=Severity.LOW, at=T0 + timedelta(seconds=100)
        )
    )
    assert result.outcome == "grouped"
    assert result.incident.severity is Severity.CRITICAL


async def test_same_rule_on_same_entities_is_a_counted_duplicate() -> None:
    corr, state = correlator()
    first = await corr.correlate(build_alert(at=T0))
    repeat = build_alert(at=T0 + timedelta(minutes=5))  # new vendor id, same thing

    result = await corr.correlate(repeat)

    assert result.outcome == "duplicate"
    inc = result.incident
    assert inc.id == first.incident.id
    assert inc.duplicate_count == 1
    assert inc.alert_ids == [first.alert_id]  # not added
    assert inc.last_seen == T0 + timedelta(minutes=5)
    assert await state.get_incident(inc.id) == inc
    assert await state.get_fingerprint(fingerprint(repeat)) == (inc.id, T0 + timedelta(minutes=5))
    assert await state.get_alert_incident(repeat.id) == inc.id

    again = await corr.correlate(build_alert(at=T0 + timedelta(minutes=10)))
    assert again.outcome == "duplicate"
    assert again.incident.duplicate_count == 2


async def test_redelivered_alert_leaves_the_incident_unchanged() -> None:
    corr, state = correlator()
    alert = build_alert()
    await corr.correlate(alert)
    await corr.correlate(
        build_alert(rule="c2_beacon", entities=[HOST, C2_IP], at=T0 + timedelta(seconds=1))
    )
    before = await state.get_incident(default_incident_id(alert))
    snapshot = (dict(state.entities), dict(state.fingerprints), dict(state.alerts))

    result = await corr.correlate(alert)

    assert result.outcome == "redelivered"
    assert result.incident == before
    assert await state.get_incident(default_incident_id(alert)) == before
    assert (state.entities, state.fingerprints, state.alerts) == snapshot


async def test_redelivered_duplicate_is_not_counted_twice() -> None:
    corr, _ = correlator()
    await corr.correlate(build_alert(at=T0))
    repeat = build_alert(at=T0 + timedelta(minutes=1))
    assert (await corr.correlate(repeat)).incident.duplicate_count == 1
    result = await corr.correlate(repeat)
    assert result.outcome == "redelivered"
    assert result.incident.duplicate_count == 1


async def test_alert_written_before_a_crash_is_recognised_on_redelivery() -> None:
    """The incident was stored but the alert index write was lost: no double add."""
    corr, state = correlator()
    await corr.correlate(build_alert(entities=[HOST]))
    grouped = build_alert(rule="lsass", entities=[HOST, USER], at=T0 + timedelta(minutes=2))
    await corr.correlate(grouped)
    opened = build_alert(rule="brute", entities=[OTHER_USER], at=T0 + timedelta(minutes=3))
    await corr.correlate(opened)
    del state.alerts[grouped.id]
    del state.alerts[opened.id]
    before = dict(state.incidents)

    assert (await corr.correlate(grouped)).outcome == "redelivered"
    assert (await corr.correlate(opened)).outcome == "redelivered"
    assert state.incidents == before
    first_id = next(iter(state.incidents))
    assert state.alerts[grouped.id] == first_id
    assert state.alerts[opened.id] == default_incident_id(opened)


async def test_returned_incident_is_not_the_stored_object() -> None:
    corr, state = correlator()
    result = await corr.correlate(build_alert())
    result.incident.alert_ids.append("ecs:forged")
    stored = await state.get_incident(result.incident.id)
    assert stored is not None
    assert stored.alert_ids == [result.alert_id]


# -- windows -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gap", "outcome"),
    [
        (timedelta(seconds=3599), "grouped"),
        (timedelta(seconds=3600), "grouped"),  # exactly at the window: still inside
        (timedelta(seconds=3601), "new"),  # one second past
    ],
)
async def test_grouping_window_boundary(gap: timedelta, outcome: str) -> None:
    corr, _ = correlator(window_seconds=3600)
    first = await corr.correlate(build_alert(rule="encoded_ps", entities=[HOST, USER]))
    result = await corr.correlate(build_alert(rule="lsass", entities=[HOST], at=T0 + gap))
    assert result.outcome == outcome
    assert (result.incident.id == first.incident.id) is (outcome == "grouped")


async def test_window_is_measured_from_the_last_alert_not_the_first() -> None:
    corr, _ = correlator(window_seconds=3600)
    first = await corr.correlate(build_alert(rule="encoded_ps", entities=[HOST]))
    await corr.correlate(build_alert(rule="lsass", entities=[HOST], at=T0 + timedelta(minutes=50)))
    result = await corr.correlate(
        build_alert(rule="brute", entities=[HOST], at=T0 + timedelta(minutes=110))
    )
    assert result.outcome == "grouped"
    assert result.incident.id == first.incident.id


async def test_incident_outside_the_window_is_never_extended() -> None:
    corr, state = correlator(window_seconds=3600)
    old = await corr.correlate(build_alert(rule="encoded_ps", entities=[HOST, USER]))
    late = await corr.correlate(
        build_alert(rule="lsass", entities=[HOST], at=T0 + timedelta(hours=3))
    )

    assert late.outcome == "new"
    assert late.incident.id != old.incident.id
    stored_old = await state.get_incident(old.incident.id)
    assert stored_old == old.incident  # untouched
    # the entity now leads to the live incident; the untouched pivot still to the old one
    assert await state.find_by_entity(HOST.key) == late.incident.id
    assert await state.find_by_entity(USER.key) == old.incident.id


@pytest.mark.parametrize(
    ("gap", "outcome"),
    [
        (timedelta(seconds=600), "duplicate"),  # exactly at the duplicate window
        (timedelta(seconds=601), "grouped"),  # past it, but inside the grouping window
    ],
)
async def test_duplicate_window_boundary(gap: timedelta, outcome: str) -> None:
    corr, _ = correlator(window_seconds=3600, duplicate_window_seconds=600)
    first = await corr.correlate(build_alert())
    result = await corr.correlate(build_alert(at=T0 + gap))
    assert result.outcome == outcome
    assert result.incident.id == first.incident.id


async def test_duplicate_window_is_separate_from_grouping_window() -> None:
    # Longer duplicate window: a repeat after the grouping window is still a duplicate.
    corr, _ = correlator(window_seconds=600, duplicate_window_seconds=7200)
    first = await corr.correlate(build_alert())
    repeat = await corr.correlate(build_alert(at=T0 + timedelta(minutes=90)))
    assert repeat.outcome == "duplicate"
    assert repeat.incident.id == first.incident.id
    # ...while another rule on the same host 90 minutes later starts a new incident.
    other = await corr.correlate(
        build_alert(rule="lsass", entities=[HOST], at=T0 + timedelta(minutes=200))
    )
    assert other.outcome == "new"


async def test_duplicate_window_slides_with_each_sighting() -> None:
    corr, _ = correlator(window_seconds=3600, duplicate_window_seconds=300)
    await corr.correlate(build_alert(at=T0))
    outcomes = [
        (await corr.correlate(build_alert(at=T0 + timedelta(minutes=4 * n)))).outcome
        for n in range(1, 6)
    ]
    assert outcomes == ["duplicate"] * 5  # 20 minutes in total, never 5 minutes apart


async def test_zero_duplicate_window_disables_suppression() -> None:
    corr, _ = correlator(duplicate_window_seconds=0)
    await corr.correlate(build_alert(at=T0))
    result = await corr.correlate(build_alert(at=T0))
    assert result.outcome == "grouped"
    assert len(result.incident.alert_ids) == 2


# -- out of order --------------------------------------------------------------------


async def test_out_of_order_alert_slightly_before_first_seen_is_grouped() -> None:
    corr, _ = correlator(window_seconds=3600)
    first = await corr.correlate(build_alert(rule="c2_beacon", entities=[HOST, C2_IP]))
    early = await corr.correlate(
        build_alert(rule="encoded_ps", entities=[HOST, USER], at=T0 - timedelta(minutes=20))
    )
    assert early.outcome == "grouped"
    assert early.incident.id == first.incident.id
    assert early.incident.first_seen == T0 - timedelta(minutes=20)
    assert early.incident.last_seen == T0


async def test_out_of_order_alert_more_than_a_window_before_first_seen_is_not_grouped() -> None:
    corr, _ = correlator(window_seconds=3600)
    first = await corr.correlate(build_alert(rule="c2_beacon", entities=[HOST, C2_IP]))
    early = await corr.correlate(
        build_alert(rule="encoded_ps", entities=[HOST], at=T0 - timedelta(seconds=3601))
    )
    assert early.outcome == "new"
    assert early.incident.id != first.incident.id


async def test_out_of_order_alert_inside_a_long_incident_is_grouped() -> None:
    # The incident spans 100 minutes by chaining; a late-arriving alert from its middle
    # is more than a window from last_seen but inside the span: it belongs there.
    corr, _ = correlator(window_seconds=3600)
    first = await corr.correlate(build_alert(rule="encoded_ps", entities=[HOST]))
    await corr.correlate(build_alert(rule="lsass", entities=[HOST], at=T0 + timedelta(minutes=50)))
    await corr.correlate(
        build_alert(rule="c2_beacon", entities=[HOST], at=T0 + timedelta(minutes=100))
    )
    late = await corr.correlate(
        build_alert(rule="brute", entities=[HOST, USER], at=T0 + timedelta(minutes=5))
    )
    assert late.outcome == "grouped"
    assert late.incident.id == first.incident.id
    assert late.incident.last_seen == T0 + timedelta(minutes=100)


async def test_out_of_order_old_incident_does_not_steal_the_pivot() -> None:
    corr, state = correlator(window_seconds=3600)
    current = await corr.correlate(build_alert(rule="c2_beacon", entities=[HOST, C2_IP]))
    stale = await corr.correlate(
        build_alert(rule="encoded_ps", entities=[HOST], at=T0 - timedelta(hours=5))
    )
    assert stale.outcome == "new"
    assert await state.find_by_entity(HOST.key) == current.incident.id
    later = await corr.correlate(
        build_alert(rule="lsass", entities=[HOST], at=T0 + timedelta(minutes=30))
    )
    assert later.incident.id == current.incident.id


async def test_out_of_order_duplicate_keeps_latest_sighting() -> None:
    corr, state = correlator(duplicate_window_seconds=600)
    first = await corr.correlate(build_alert(at=T0))
    result = await corr.correlate(build_alert(at=T0 - timedelta(minutes=4)))
    assert result.outcome == "duplicate"
    assert result.incident.first_seen == T0 - timedelta(minutes=4)
    assert result.incident.last_seen == T0
    assert await state.get_fingerprint(fingerprint(build_alert())) == (first.incident.id, T0)


# -- pivots --------------------------------------------------------------------------


async def test_ignored_values_do_not_group() -> None:
    dns_a = build_alert(rule="c2_beacon", entities=[HOST, RESOLVER])
    dns_b = build_alert(rule="brute", entities=[OTHER_HOST, RESOLVER], at=T0 + timedelta(seconds=1))

    corr, state = correlator(ignore_values=["ip:8.8.8.8"])
    a, b = await corr.correlate(dns_a), await corr.correlate(dns_b)
    assert (a.outcome, b.outcome) == ("new", "new")
    assert await state.find_by_entity(RESOLVER.key) is None
    assert RESOLVER in b.incident.entities  # still recorded, just not a pivot

    corr, _ = correlator()  # without the ignore list the resolver links them
    await corr.correlate(dns_a)
    assert (await corr.correlate(dns_b)).outcome == "grouped"


def test_ignore_values_are_normalised_like_entities() -> None:
    config = CorrelationConfig(
        ignore_values=["host:WKS-Scanner-01.", "domain:Example.COM.", "ip:8.8.8.8", "ip:8.8.8.8"]
    )
    assert config.ignore_values == ["host:wks-scanner-01.", "domain:example.com", "ip:8.8.8.8"]


@pytest.mark.parametrize("bad", ["8.8.8.8", "ipv4:8.8.8.8", "ip:not-an-ip", "host:"])
def test_ignore_values_reject_what_is_not_an_entity_key(bad: str) -> None:
    with pytest.raises(ValidationError):
        CorrelationConfig(ignore_values=[bad])


async def test_processes_are_not_pivots_by_default() -> None:
    a = build_alert(rule="encoded_ps", entities=[HOST, POWERSHELL])
    b = build_alert(rule="lsass", entities=[OTHER_HOST, POWERSHELL], at=T0 + timedelta(seconds=1))

    corr, state = correlator()
    assert (await corr.correlate(a)).outcome == "new"
    assert (await corr.correlate(b)).outcome == "new"
    assert await state.find_by_entity(POWERSHELL.key) is None

    corr, _ = correlator(entity_types=[*DEFAULT_PIVOT_TYPES, EntityType.PROCESS])
    await corr.correlate(a)
    assert (await corr.correlate(b)).outcome == "grouped"


async def test_alert_without_pivots_opens_its_own_incident() -> None:
    corr, _ = correlator()
    a = await corr.correlate(build_alert(rule="encoded_ps", entities=[POWERSHELL]))
    b = await corr.correlate(build_alert(rule="lsass", entities=[], at=T0 + timedelta(seconds=1)))
    assert (a.outcome, b.outcome) == ("new", "new")
    assert a.incident.id != b.incident.id


async def test_unrelated_alerts_stay_separate() -> None:
    corr, state = correlator()
    a = await corr.correlate(build_alert(rule="encoded_ps", entities=[HOST, USER, SHA256]))
    b = await corr.correlate(
        build_alert(rule="brute", entities=[OTHER_HOST, OTHER_USER], at=T0 + timedelta(minutes=1))
    )
    assert (a.outcome, b.outcome) == ("new", "new")
    assert a.incident.id != b.incident.id
    assert len(state.incidents) == 2


async def test_several_matches_pick_the_most_recently_seen_without_merging() -> None:
    corr, state = correlator(window_seconds=3600)
    on_host = await corr.correlate(build_alert(rule="encoded_ps", entities=[HOST]))
    on_user = await corr.correlate(
        build_alert(rule="brute", entities=[OTHER_USER], at=T0 + timedelta(minutes=10))
    )
    both = await corr.correlate(
        build_alert(rule="lsass", entities=[HOST, OTHER_USER], at=T0 + timedelta(minutes=20))
    )

    assert both.outcome == "grouped"
    assert both.incident.id == on_user.incident.id  # last seen at +10 min beats +0
    untouched = await state.get_incident(on_host.incident.id)
    assert untouched == on_host.incident  # no merge
    assert await state.find_by_entity(HOST.key) == on_user.incident.id


# -- identity and determinism -------------------------------------------------------


def test_default_incident_id_is_derived_from_the_alert_id() -> None:
    alert = build_alert(alert_id="ecs:8d3f0b6a-52c1-4e8e-9d7a-1b2c3d4e5f60")
    digest = hashlib.sha256(b"ecs:8d3f0b6a-52c1-4e8e-9d7a-1b2c3d4e5f60").hexdigest()
    assert default_incident_id(alert) == f"inc-{digest[:16]}"
    assert default_incident_id(build_alert(alert_id=alert.id, at=T0 + timedelta(seconds=9))) == (
        default_incident_id(alert)
    )


async def test_custom_id_factory_is_used() -> None:
    state = InMemoryCorrelationState()
    corr = Correlator(state, CorrelationConfig(), id_factory=lambda a: f"INC-{a.rule.id}")
    result = await corr.correlate(build_alert(rule="lsass"))
    assert result.incident.id == "INC-7c4a8d09-ca37-42b8-8f4e-1d2a3b4c5d6e"


async def test_two_replicas_fed_the_same_alerts_agree() -> None:
    alerts = [
        build_alert(rule="encoded_ps", entities=[HOST, USER, POWERSHELL]),
        build_alert(
            rule="encoded_ps", entities=[HOST, USER, POWERSHELL], at=T0 + timedelta(seconds=1)
        ),
        build_alert(rule="c2_beacon", entities=[HOST, C2_IP], at=T0 + timedelta(seconds=90)),
        build_alert(
            rule="brute", entities=[OTHER_HOST, OTHER_USER], at=T0 + timedelta(seconds=1000)
        ),
        build_alert(rule="lsass", entities=[OTHER_HOST, SHA256], at=T0 + timedelta(minutes=45)),
    ]
    replica_a, state_a = correlator()
    replica_b, state_b = correlator()
    out_a = [(await replica_a.correlate(a)).outcome for a in alerts]
    out_b = [(await replica_b.correlate(a)).outcome for a in alerts]
    assert out_a == out_b == ["new", "duplicate", "grouped", "new", "grouped"]
    assert state_a.incidents == state_b.incidents
    assert state_a.entities == state_b.entities


async def test_concurrent_calls_are_serialised() -> None:
    corr, state = correlator(duplicate_window_seconds=0)
    alerts = [
        build_alert(rule="lsass", entities=[HOST, USER], at=T0 + timedelta(seconds=n))
        for n in range(40)
    ]
    results = await asyncio.gather(*(corr.correlate(a) for a in alerts))
    assert [r.outcome for r in results] == ["new"] + ["grouped"] * 39
    (incident,) = state.incidents.values()
    assert incident.alert_ids == [a.id for a in alerts]


# -- fingerprints --------------------------------------------------------------------


def test_fingerprint_ignores_time_id_title_roles_and_order() -> None:
    a = build_alert(entities=[HOST, USER, POWERSHELL])
    b = build_alert(
        entities=[POWERSHELL, USER.model_copy(update={"role": "target"}), HOST],
        at=T0 + timedelta(days=3),
        title="Encoded PowerShell (v2)",
        severity=Severity.LOW,
    )
    assert a.id != b.id
    assert fingerprint(a) == fingerprint(b)
    assert len(fingerprint(a)) == 64
    assert int(fingerprint(a), 16) >= 0


def test_fingerprint_differs_by_rule_entities_and_format() -> None:
    base = build_alert(entities=[HOST, USER])
    assert fingerprint(base) != fingerprint(build_alert(rule="lsass", entities=[HOST, USER]))
    assert fingerprint(base) != fingerprint(build_alert(entities=[HOST]))
    assert fingerprint(base) != fingerprint(build_alert(entities=[HOST, OTHER_USER]))
    assert fingerprint(base) != fingerprint(base.model_copy(update={"format": "ocsf"}))


def test_fingerprint_uses_rule_name_when_the_rule_has_no_id() -> None:
    a = build_alert().model_copy(update={"rule": Rule(name="ET POLICY Tor Exit Node")})
    b = a.model_copy(update={"rule": Rule(name="ET POLICY Tor Exit Node", description="v2")})
    c = a.model_copy(update={"rule": Rule(name="ET MALWARE Cobalt Strike Beacon")})
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)


# -- bounded incidents and new information -------------------------------------------


async def test_full_incident_takes_no_more_alerts() -> None:
    corr, _ = correlator(max_alerts_per_incident=3)
    results = [
        await corr.correlate(
            build_alert(
                rule="c2_beacon",
                entities=[HOST, Entity(type=EntityType.IP, value=f"185.220.101.{i}")],
                at=T0 + timedelta(minutes=i),
            )
        )
        for i in range(5)
    ]
    assert [r.outcome for r in results] == ["new", "grouped", "grouped", "new", "grouped"]
    first, second = results[2].incident, results[4].incident
    assert len(first.alert_ids) == 3 and len(second.alert_ids) == 2
    assert first.id != second.id


async def test_grouped_alert_reports_whether_it_adds_anything() -> None:
    corr, _ = correlator()
    await corr.correlate(build_alert(entities=[HOST, USER, SRC_IP]))
    new_rule = await corr.correlate(
        build_alert(rule="c2_beacon", entities=[HOST], at=T0 + timedelta(minutes=1))
    )
    assert new_rule.outcome == "grouped" and new_rule.new_information
    known_everything = await corr.correlate(
        build_alert(rule="c2_beacon", entities=[HOST, USER], at=T0 + timedelta(minutes=2))
    )
    assert known_everything.outcome == "grouped" and not known_everything.new_information
    new_entity = await corr.correlate(
        build_alert(rule="c2_beacon", entities=[HOST, C2_IP], at=T0 + timedelta(minutes=3))
    )
    assert new_entity.outcome == "grouped" and new_entity.new_information
    raised = await corr.correlate(
        build_alert(
            rule="c2_beacon",
            entities=[HOST, USER, C2_IP],
            severity=Severity.CRITICAL,
            at=T0 + timedelta(minutes=4),
        )
    )
    assert raised.new_information and raised.incident.severity is Severity.CRITICAL
