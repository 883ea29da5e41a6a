"""Identity resolution: one person named three ways by three vendors ends in one incident.

The records are vendor-shaped documents run through the real normalizers; the
only thing they share is the person, each time under a different name.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from soc_agent.correlate import (
    CorrelationConfig,
    Correlator,
    InMemoryCorrelationState,
    load_identity_book,
)
from soc_agent.errors import ConfigError
from soc_agent.ingest import normalize
from soc_agent.models import Alert, EntityType

RECEIVED = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
UPN = "m.okafor@corp.example.com"
OBJECT_ID = "6f1c2b4a-93d1-4e8e-a0b5-7c2d9e4f1a30"
SID = "S-1-5-21-3623811015-3361044348-30300820-1013"


def splunk(user: str, at: str = "1772452800.000") -> dict[str, Any]:
    """A Splunk ES notable naming the user `DOMAIN\\sam`, as Windows logs do."""
    return {
        "sid": "scheduler__admin_QWNjZXNz__RMD5_at_1772452800_77",
        "search_name": "Access - Excessive Failed Logins - Rule",
        "result": {
            "_time": at,
            "event_id": "5E0F1A2B-3C4D-4E5F-8A9B-0C1D2E3F4A5B@@notable@@9d8c7b6a5f4e3d2c",
            "rule_name": "Excessive Failed Logins",
            "severity": "medium",
            "user": user,
        },
    }


def graph(account: str, domain: str, upn: str | None) -> dict[str, Any]:
    """A Graph security alert whose user evidence carries every name Entra knows."""
    user: dict[str, Any] = {"accountName": account, "domainName": domain}
    if upn is not None:
        user |= {"userPrincipalName": upn, "azureAdUserId": OBJECT_ID, "userSid": SID}
    return {
        "@odata.type": "#microsoft.graph.security.alert",
        "id": "da6387520104555123_-118442287",
        "title": "Anonymous IP address sign-in",
        "severity": "medium",
        "createdDateTime": "2026-03-02T12:20:00Z",
        "evidence": [
            {
                "@odata.type": "#microsoft.graph.security.userEvidence",
                "roles": ["compromised"],
                "userAccount": user,
            }
        ],
    }


def ocsf(name: str) -> dict[str, Any]:
    """An OCSF detection finding from an IdP naming the user by their sign-in name."""
    return {
        "class_uid": 2004,
        "severity_id": 3,
        "time": 1772455200000,
        "metadata": {"version": "1.2.0", "product": {"name": "Okta", "vendor_name": "Okta"}},
        "finding_info": {"uid": "f0e1d2c3b4a5", "title": "MFA push denied repeatedly"},
        "actor": {"user": {"name": name}},
    }


async def incidents_for(*docs: dict[str, Any]) -> tuple[list[str], list[Alert]]:
    corr = Correlator(InMemoryCorrelationState(), CorrelationConfig(window_seconds=7200))
    alerts = [normalize(doc, received_at=RECEIVED) for doc in docs]
    results = [await corr.correlate(alert) for alert in alerts]
    return [r.incident.id for r in results], alerts


async def test_graph_user_keeps_every_name_with_the_upn_as_value() -> None:
    alert = normalize(graph("mokafor", "CORP", UPN), received_at=RECEIVED)
    [user] = [e for e in alert.entities if e.type is EntityType.USER]
    assert user.value == UPN
    assert user.aliases == {
        "upn": UPN,
        "sam": "mokafor",
        "nt_account": "corp\\mokafor",
        "object_id": OBJECT_ID,
        "sid": SID.lower(),
    }


@pytest.mark.parametrize(
    "order",
    [(0, 1, 2), (2, 1, 0), (1, 0, 2), (0, 2, 1)],
    ids=["splunk-graph-ocsf", "ocsf-graph-splunk", "graph-first", "bridge-last"],
)
async def test_one_person_three_names_three_vendors_one_incident(
    order: tuple[int, int, int],
) -> None:
    docs = [splunk("CORP\\mokafor"), graph("mokafor", "CORP", UPN), ocsf(UPN)]
    ids, _ = await incidents_for(*(docs[i] for i in order))
    if order == (0, 2, 1):
        # Splunk and OCSF share no name: until Graph tells us they are one person they
        # are two incidents, and Graph joins the most recent one.
        assert ids[0] != ids[1]
        assert ids[2] == ids[1]
    else:
        assert len(set(ids)) == 1


async def test_incident_holds_one_user_with_all_names_and_the_first_value() -> None:
    corr = Correlator(InMemoryCorrelationState(), CorrelationConfig(window_seconds=7200))
    for doc in (splunk("CORP\\mokafor"), graph("mokafor", "CORP", UPN), ocsf(UPN)):
        result = await corr.correlate(normalize(doc, received_at=RECEIVED))
    users = [e for e in result.incident.entities if e.type is EntityType.USER]
    assert len(users) == 1
    assert users[0].value == "mokafor"  # the first name seen stays: decisions keep targets
    assert {"upn", "sam", "nt_account", "object_id", "sid"} <= set(users[0].aliases)
    assert result.outcome == "grouped"


async def test_a_new_alias_is_new_information() -> None:
    corr = Correlator(InMemoryCorrelationState(), CorrelationConfig(window_seconds=7200))
    await corr.correlate(normalize(graph("mokafor", "CORP", None), received_at=RECEIVED))
    again = graph("mokafor", "CORP", UPN)
    again["id"] = "da6387520104555123_-999"
    result = await corr.correlate(normalize(again, received_at=RECEIVED))
    assert result.outcome == "grouped"
    assert result.new_information


async def test_different_people_sharing_no_name_stay_apart() -> None:
    ids, _ = await incidents_for(splunk("CORP\\mokafor"), ocsf("a.nwosu@corp.example.com"))
    assert ids[0] != ids[1]


async def test_an_ignored_name_unlinks_the_entity_under_every_name() -> None:
    corr = Correlator(
        InMemoryCorrelationState(),
        CorrelationConfig(window_seconds=7200, ignore_values=["user:corp\\mokafor"]),
    )
    first = await corr.correlate(normalize(splunk("CORP\\mokafor"), received_at=RECEIVED))
    second = await corr.correlate(normalize(graph("mokafor", "CORP", UPN), received_at=RECEIVED))
    assert first.incident.id != second.incident.id


async def test_the_identity_file_renames_an_entity_it_knows_and_keeps_the_vendor_name(
    tmp_path: Path,
) -> None:
    path = tmp_path / "identities.yaml"
    path.write_text(
        "assets:\n"
        f"  - {{type: user, value: {UPN}, aliases: {{sam: mokafor, object_id: {OBJECT_ID}}}}}\n"
    )
    book = load_identity_book(path)
    alert = book.resolve(normalize(splunk("CORP\\mokafor"), received_at=RECEIVED))
    [user] = [e for e in alert.entities if e.type is EntityType.USER]
    assert user.value == UPN
    assert user.aliases["nt_account"] == "corp\\mokafor"  # the vendor's names stay
    assert user.aliases["object_id"] == OBJECT_ID
    other = normalize(ocsf("a.nwosu@corp.example.com"), received_at=RECEIVED)
    assert book.resolve(other) is other  # nothing known: the same alert


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ("{type: user, value: a, aliases: {UPN: a@x.example}}", "assets.0"),
        ("{type: ip, value: 10.0.0.1, aliases: {vip: not-an-ip}}", "assets.0"),
        ("{type: user, value: a, aliases: [a@x.example]}", "assets.0.aliases"),
    ],
)
def test_a_bad_alias_stops_start_up_naming_file_line_and_field(
    tmp_path: Path, entry: str, field: str
) -> None:
    path = tmp_path / "identities.yaml"
    path.write_text(f"assets:\n  - {entry}\n")
    with pytest.raises(ConfigError) as caught:
        load_identity_book(path)
    assert str(caught.value).startswith(f"{path}:2: {field}")


def falcon(hostname: str, agent_id: str) -> dict[str, Any]:
    """A Falcon streaming EPP detection on a machine known by its short name."""
    return {
        "metadata": {
            "customerIDString": "8f3c2a1b9d4e4f6a8b7c6d5e4f3a2b1c",
            "eventType": "EPPDetectionSummaryEvent",
            "eventCreationTime": 1772452800000,
        },
        "event": {
            "CompositeId": "8f3c2a1b9d4e4f6a8b7c6d5e4f3a2b1c:ind:" + agent_id + ":1-2-3",
            "Name": "Suspicious Activity",
            "Severity": 70,
            "SeverityName": "High",
            "Hostname": hostname,
            "AgentId": agent_id,
        },
    }


def graph_device(dns_name: str) -> dict[str, Any]:
    """A Defender alert naming the machine by its DNS name."""
    doc = graph("x", "X", None)
    doc["id"] = "da638752010455512345_-7"
    doc["evidence"] = [
        {
            "@odata.type": "#microsoft.graph.security.deviceEvidence",
            "roles": [],
            "deviceDnsName": dns_name,
            "mdeDeviceId": "3f1a9c2e7b8d4e6f0a1b2c3d4e5f6a7b8c9d0e1f",
        }
    ]
    return doc


async def test_a_host_by_short_name_and_by_fqdn_is_one_incident() -> None:
    ids, alerts = await incidents_for(
        falcon("WS-0042", "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"),
        graph_device("ws-0042.corp.example.com"),
    )
    assert ids[0] == ids[1]
    [host] = [e for e in alerts[1].entities if e.type is EntityType.HOST]
    assert host.aliases["hostname"] == "ws-0042"
    assert host.name_for(["hostname"]) == "ws-0042"  # what Falcon containment is sent
    assert host.name_for(["fqdn"]) == "ws-0042.corp.example.com"  # and Defender's


async def test_a_short_name_in_another_domain_is_the_documented_trade_off() -> None:
    # Short names link across DNS domains (as the plain value always did); an operator
    # who runs two domains with clashing names lists the short name in ignore_values.
    corr = Correlator(
        InMemoryCorrelationState(),
        CorrelationConfig(window_seconds=7200, ignore_values=["host:ws-0042"]),
    )
    first = await corr.correlate(normalize(graph_device("ws-0042.corp.example.com")))
    other = graph_device("ws-0042.lab.example.com")
    other["id"] = "da638752010455512345_-8"
    other["evidence"][0]["mdeDeviceId"] = "0" * 39 + "1"
    second = await corr.correlate(normalize(other))
    assert first.incident.id != second.incident.id


def test_an_entity_copied_with_new_aliases_is_matched_by_them() -> None:
    """Names and keys are remembered per entity; a copy with new aliases must not keep
    the original's (correlation would miss the person under the new name)."""
    from soc_agent.models import Entity
    from soc_agent.models.alert import merge_aliases

    person = Entity(type=EntityType.USER, value=UPN)
    assert person.keys == (f"user:{UPN}",)
    merged = merge_aliases(person, Entity(type=EntityType.USER, value=SID.lower()))
    assert merged.keys == (f"user:{UPN}", f"user:{SID.lower()}")
    assert merged.names == (UPN, SID.lower())
    assert person.keys == (f"user:{UPN}",)
    assert list(merged.model_dump()["aliases"].values()) == [SID.lower()]
    assert merged == Entity(type=EntityType.USER, value=UPN, aliases=merged.aliases)
