"""CrowdStrike Falcon Alerts API records: expected alerts per fixture, detection, garbage."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from soc_agent.errors import NormalizationError
from soc_agent.ingest import (
    crowdstrike,
    crowdstrike_alert,
    elastic,
    guardduty,
    ms_graph,
    ocsf,
    soc_risk,
    splunk,
    suricata,
)
from soc_agent.models import Alert, Severity
from soc_agent.models.alert import ENTITIES_TRUNCATED

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
OURS = FIXTURES / "alerts" / "crowdstrike_alert"
RECEIVED = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
OTHER_FORMATS = (elastic, ocsf, suricata, guardduty, ms_graph, crowdstrike, splunk, soc_risk)
CID = "c0ffee11d2e34f5a9b8c7d6e5f4a3b2c"
WIN_AID = "4f1c9a7e2b3d4c5e8f9a0b1c2d3e4f5a"
LINUX_AID = "9d8c7b6a5f4e43d2a1b0c9d8e7f6a5b4"
SID = "s-1-5-21-3341520738-2129617843-2460319044-"

# (type, value, role, aliases)
Ent = tuple[str, str, str | None, frozenset[tuple[str, str]]]


def ent(kind: str, value: str, role: str | None = None, **aliases: str) -> Ent:
    return (kind, value, role, frozenset(aliases.items()))


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((OURS / name).read_text(encoding="utf-8"))
    return doc


def norm(doc: dict[str, Any], **kwargs: Any) -> Alert:
    return crowdstrike_alert.normalize(doc, received_at=RECEIVED, **kwargs)


@dataclass(frozen=True)
class Case:
    file: str
    id: str
    severity: Severity
    created_at: datetime
    title: str
    rule_id: str
    rule_name: str
    product: str
    entities: set[Ent]
    techniques: list[str] = field(default_factory=list)
    tactics: list[str] = field(default_factory=list)
    risk_score: float | None = None
    labels: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str, str | None], dict[str, str]] = field(default_factory=dict)


CASES = [
    Case(
        "epp_lsass_minidump_windows.json",
        f"crowdstrike_alert:{CID}:ind:{WIN_AID}:8600451239-10197-3072016",
        Severity.CRITICAL,
        datetime(2025, 6, 4, 8, 42, 19, 118736, tzinfo=UTC),  # created_timestamp, ns cut to us
        "CredentialDumpingViaComsvcs",
        "10197",
        "CredentialDumpingViaComsvcs",
        "Falcon Endpoint Protection",
        {
            ent("host", "fin-ws-0231", None, falcon_aid=WIN_AID),
            ent("ip", "10.20.31.231"),
            ent(
                "user",
                "p.nakamura@corp.example.com",
                "actor",
                upn="p.nakamura@corp.example.com",
                sam="p.nakamura",
                nt_account="corp\\p.nakamura",  # logon_domain, not the DNS machine_domain
                sid=f"{SID}4117",
            ),
            ent("process", "rundll32.exe"),
            ent("process", "powershell.exe", "parent"),
            ent("process", "explorer.exe", "grandparent"),
            ent("file_hash", "4e3f1a9c0b7d2e8f6a5c4b3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f"),
            ent("file_hash", "ef3179d498793bf4234f708d3be28633"),  # the all-zero sha1 is not one
            ent("ip", "10.20.0.15", "destination"),  # outbound network access
            ent("ip", "10.20.31.231", "source"),
        },
        ["T1003"],
        ["Credential Access"],
        risk_score=90,
        labels={
            "event_time": "2025-06-04T08:41:17.203000+00:00",
            "product": "epp",
            "type": "ldt",
            "aggregate_id": f"aggind:{WIN_AID}:8590127734",
            "incident_id": f"inc:{WIN_AID}:9b8a7c6d5e4f40318273645546372819",
            "pattern_disposition": "Prevention, process killed.",
            "severity_name": "Critical",
            "cid": CID,
        },
        attributes={
            ("host", "fin-ws-0231", None): {
                "os": "Windows",
                "os_version": "Windows 11",
                "domain": "CORP.EXAMPLE.COM",
                "local_ip": "10.20.31.231",
                "external_ip": "198.51.100.24",  # a NAT address: attribute, not an entity
                "mac": "d4-81-d7-3a-19-c2",
            },
            ("process", "powershell.exe", "parent"): {
                "pid": "7744",
                "sha256": "de96a6e69944335375dc1ac238336066889d9ffc7d73628ef4fe1b1b160ab32c",
                "user": "p.nakamura",
            },
            ("ip", "10.20.0.15", "destination"): {"port": "445"},
        },
    ),
    Case(
        "epp_ml_linux_no_severity_name.json",
        f"crowdstrike_alert:{CID}:ind:{LINUX_AID}:17180021455-5708-1186560",
        Severity.LOW,  # no severity_name: the score 30 on the shared scale
        datetime(2025, 6, 5, 2, 18, 46, 330217, tzinfo=UTC),
        "LinuxSensorMLLowestConfidence",
        "5708",
        "LinuxSensorMLLowestConfidence",
        "Falcon Endpoint Protection",
        {
            ent("host", "build-runner-07", None, falcon_aid=LINUX_AID),
            ent("ip", "172.31.40.17"),
            ent("user", "svc-build", "actor", sam="svc-build"),  # machine_domain is ""
            ent("process", "kworkerd"),
            ent("process", "bash", "parent"),
            ent("process", "sshd", "grandparent"),
            # sha256 and the ioc_context hash are one entity
            ent("file_hash", "b7e2c4a1d9f03e5b6c8a7d2f1e4b9c0a3d6f8e2b5c7a9d1f3e6b8c0a2d4f6e8b"),
            ent("file_hash", "91f2ab3c4d5e6f708192a3b4c5d6e7f8"),
        },
        [],  # CST0007 is Falcon's id, not ATT&CK
        [],  # "Machine Learning" / CSTA0004 is a Falcon category
        risk_score=30,
        labels={
            "tactic": "Machine Learning",
            "tactic_id": "CSTA0004",
            "technique": "Sensor-based ML",
            "technique_id": "CST0007",
            "platform": "Linux",
        },
    ),
    Case(
        "idp_unusual_endpoint_login.json",
        f"crowdstrike_alert:{CID}:ind:{CID}:5E2A9C41-7B3D-4F08-9A61-2C7D8E4B1F30",
        Severity.HIGH,  # severity_name wins over the score 64 (MEDIUM on the shared scale)
        datetime(2025, 6, 6, 19, 24, 11, 904398, tzinfo=UTC),
        "Unusual login to an endpoint",
        "51108",
        "IdpEntityUnusualEndpointAccess",
        "Falcon Identity Protection",
        {
            # the bare user_name "j.vermeulen" folds into the source account
            ent(
                "user",
                "j.vermeulen@corp.example.com",
                "actor",
                upn="j.vermeulen@corp.example.com",
                sam="j.vermeulen",
                nt_account="corp.example.com\\j.vermeulen",
                object_id="3f9b2c1d-7e6a-4b58-9c0d-1e2f3a4b5c6d",
                sid=f"{SID}2290",
            ),
            ent("user", "fs-corp-02$", "target", sam="fs-corp-02$", sid=f"{SID}1163"),
            ent(
                "host",
                "eng-lt-0418.corp.example.com",
                "source",
                fqdn="eng-lt-0418.corp.example.com",
                hostname="eng-lt-0418",
                falcon_aid="2a3b4c5d6e7f48091a2b3c4d5e6f7a8b",
            ),
            ent("ip", "10.20.44.18", "source"),
            ent(
                "host",
                "fs-corp-02.corp.example.com",
                "destination",
                fqdn="fs-corp-02.corp.example.com",
                hostname="fs-corp-02",
                falcon_aid="8e7d6c5b4a3948271605f4e3d2c1b0a9",
            ),
            ent("host", "dc01", "destination"),
        },
        ["T1021"],
        ["Lateral Movement"],
        risk_score=64,
        labels={"product": "idp", "country": "NL", "scenario": "lateral_movement"},
        attributes={
            ("user", "j.vermeulen@corp.example.com", "actor"): {
                "domain": "CORP.EXAMPLE.COM",
                "account_name": "Jonas Vermeulen",
            },
            ("host", "dc01", "destination"): {
                "kind": "domain_controller",
                "object_sid": "S-1-5-21-3341520738-2129617843-2460319044-1001",
            },
        },
    ),
    Case(
        "ngsiem_correlation_rdp_bruteforce.json",
        f"crowdstrike_alert:{CID}:ngsiem:{CID}:7d2f9a1c4e6b48d0a3c5e7f9b1d3f5a7",
        Severity.HIGH,
        datetime(2025, 6, 7, 4, 6, 52, 661197, tzinfo=UTC),
        "RDP brute force followed by successful logon",
        "0196f1a2b3c47d5e8f90a1b2c3d4e5f6",  # correlation_rule_id, not the generic pattern
        "RDP brute force followed by successful logon",
        "Falcon Next-Gen SIEM",
        {
            ent("host", "jump-rdp-01"),
            ent(
                "host",
                "jump-rdp-01.corp.example.com",
                "destination",
                fqdn="jump-rdp-01.corp.example.com",
                hostname="jump-rdp-01",
            ),
            ent("ip", "192.0.2.147", "source"),
            ent("ip", "10.20.5.11", "destination"),
            # users[] and user_names[] name one account
            ent("user", "adm-backup", None, sam="adm-backup", sid=f"{SID}3011"),
        },
        ["T1110.001", "T1133"],
        ["Credential Access", "Initial Access"],
        risk_score=70,
        labels={"type": "correlation-detection", "source_vendors": "Microsoft"},
    ),
    Case(
        "automated_lead_no_severity.json",
        f"crowdstrike_alert:{CID}:automated-lead:{CID}:"
        "e1d2c3b4a5968778695a4b3c2d1e0f9e8d7c6b5a4938271605f4e3d2c1b0a9f8",
        Severity.MEDIUM,  # no severity at all never hides an alert
        datetime(2025, 6, 5, 2, 31, 7, 448210, tzinfo=UTC),
        "build-runner-07 at 2025-06-05T02:16:03Z",
        "185000",
        "build-runner-07 at 2025-06-05T02:16:03Z",
        "Falcon",
        {ent("host", "build-runner-07", None, falcon_aid=LINUX_AID)},  # threatgraph_indicators
        ["T1105"],  # mitre_attack entries without ids are skipped
        ["Command and Control"],
        labels={"severity_raw": "missing", "product": "automated-lead"},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.file)
def test_fixture_normalises_to_expected_alert(case: Case) -> None:
    alert = norm(load(case.file))
    assert alert.format == "crowdstrike_alert"
    assert alert.id == case.id
    assert alert.source_id == case.id.removeprefix("crowdstrike_alert:")
    assert alert.severity is case.severity
    assert alert.created_at == case.created_at
    assert alert.created_at.tzinfo is UTC
    assert alert.title == case.title
    assert (alert.rule.id, alert.rule.name) == (case.rule_id, case.rule_name)
    assert (alert.vendor, alert.product) == ("CrowdStrike", case.product)
    got = {(e.type.value, e.value, e.role, frozenset(e.aliases.items())) for e in alert.entities}
    assert got == case.entities
    assert len(alert.entities) == len(case.entities)
    assert alert.techniques == case.techniques
    assert alert.tactics == case.tactics
    assert alert.risk_score == case.risk_score
    assert alert.received_at == RECEIVED
    for key, value in case.labels.items():
        assert alert.labels.get(key) == value, key
    by_key = {(e.type.value, e.value, e.role): e.attributes for e in alert.entities}
    for where, attrs in case.attributes.items():
        for name, value in attrs.items():
            assert by_key[where].get(name) == value, (where, name)


def test_every_fixture_is_in_the_table() -> None:
    assert {c.file for c in CASES} == {p.name for p in OURS.glob("*.json")}
    assert len(CASES) >= 4


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.file)
def test_ids_are_stable_and_the_original_is_untouched(case: Case) -> None:
    doc = load(case.file)
    pristine = copy.deepcopy(doc)
    first = norm(doc)
    assert doc == pristine
    assert first.original == pristine
    # A re-polled alert whose workflow fields changed is the same alert.
    later = {
        **doc,
        "status": "closed",
        "updated_timestamp": "2025-07-01T00:00:00Z",
        "crawled_timestamp": "2025-07-01T00:00:00Z",
        "seconds_to_resolved": 86400,
    }
    assert crowdstrike_alert.normalize(later).id == first.id
    reordered = json.loads(json.dumps(doc, sort_keys=True))
    assert norm(reordered) == first


# --- detection ------------------------------------------------------------------------


def other_fixture_files() -> list[Path]:
    files = [p for p in (FIXTURES / "alerts").glob("*/*.json") if p.parent != OURS]
    files += list((FIXTURES / "wazuh").glob("*.json"))
    return sorted(files)


def _records(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return data if isinstance(data, list) else [data]


def test_other_fixtures_exist() -> None:
    assert len(other_fixture_files()) > 20


@pytest.mark.parametrize("path", other_fixture_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_matches_no_other_formats_record(path: Path) -> None:
    for record in _records(path):
        if isinstance(record, dict):
            assert not crowdstrike_alert.matches(record)
            for inner in crowdstrike_alert.expand(record) or []:
                assert not crowdstrike_alert.matches(inner)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.file)
def test_matches_own_records_and_no_other_format_does(case: Case) -> None:
    doc = load(case.file)
    assert crowdstrike_alert.matches(doc)
    for module in OTHER_FORMATS:
        assert not module.matches(doc), module.FORMAT


def test_streaming_epp_summary_is_not_an_alerts_api_record() -> None:
    stream = json.loads((FIXTURES / "alerts" / "crowdstrike" / "epp_masquerading.json").read_text())
    assert crowdstrike.matches(stream)
    assert not crowdstrike_alert.matches(stream)
    # Even with the composite id copied to the top level, the PascalCase event is not ours.
    assert not crowdstrike_alert.matches({**stream, "composite_id": "x"})


@pytest.mark.parametrize(
    "doc",
    [
        {"composite_id": "abc", "cid": "c", "created_timestamp": "2025-01-01T00:00:00Z"},  # no ':'
        {"composite_id": f"{CID}:ind:x:1", "created_timestamp": "2025-01-01T00:00:00Z"},
        {"composite_id": f"{CID}:ind:x:1", "cid": CID},
        {"composite_id": 12, "cid": CID, "timestamp": "2025-01-01T00:00:00Z"},
        {"CompositeId": f"{CID}:ind:x:1", "cid": CID, "timestamp": "2025-01-01T00:00:00Z"},
    ],
)
def test_matches_needs_every_marker(doc: dict[str, Any]) -> None:
    assert not crowdstrike_alert.matches(doc)


def test_expand_splits_an_api_response() -> None:
    a, b = load(CASES[0].file), load(CASES[2].file)
    response = {
        "meta": {"query_time": 0.0123, "powered_by": "detectsapi", "trace_id": "7f3e..."},
        "resources": [a, b],
        "errors": [],
    }
    assert crowdstrike_alert.expand(response) == [a, b]
    assert not crowdstrike_alert.matches(response)
    assert crowdstrike_alert.expand({**response, "resources": []}) is None
    assert crowdstrike_alert.expand({"resources": [a]}) is None  # no meta: not a response
    assert crowdstrike_alert.expand({"meta": {}, "resources": ["ind:x"]}) is None  # ids only
    assert crowdstrike_alert.expand(a) is None


# --- mapping details ----------------------------------------------------------------------


def base() -> dict[str, Any]:
    return load("epp_lsass_minidump_windows.json")


def user(alert: Alert) -> Any:
    [found] = [e for e in alert.entities if e.type.value == "user"]
    return found


@pytest.mark.parametrize(
    ("changes", "severity", "risk", "raw"),
    [
        ({"severity_name": "Informational", "severity": 5}, Severity.INFORMATIONAL, 5, None),
        ({"severity_name": "Low", "severity": 25}, Severity.LOW, 25, None),
        ({"severity_name": "medium"}, Severity.MEDIUM, 90, None),  # word, any case
        ({"severity_name": None, "severity": 95}, Severity.CRITICAL, 95, None),
        ({"severity_name": None, "severity": "72"}, Severity.HIGH, 72, None),  # numeric string
        ({"severity_name": "Unknown", "severity": 45}, Severity.MEDIUM, 45, None),
        ({"severity_name": "Severe", "severity": None}, Severity.MEDIUM, None, "Severe"),
        ({"severity_name": None, "severity": 250}, Severity.MEDIUM, None, "250"),
        ({"severity_name": None, "severity": -1}, Severity.MEDIUM, None, "-1"),
        ({"severity_name": "High", "severity": 250}, Severity.HIGH, None, None),
        ({"severity_name": "", "severity": None}, Severity.MEDIUM, None, "missing"),
    ],
)
def test_severity_mapping(
    changes: dict[str, Any], severity: Severity, risk: float | None, raw: str | None
) -> None:
    alert = norm({**base(), **changes})
    assert alert.severity is severity
    assert alert.risk_score == risk
    assert alert.labels.get("severity_raw") == raw


def test_created_at_falls_back_to_the_event_timestamp() -> None:
    doc = base()
    del doc["created_timestamp"]
    assert norm(doc).created_at == datetime(2025, 6, 4, 8, 41, 17, 203000, tzinfo=UTC)
    offset = norm({**base(), "created_timestamp": "2025-06-04T10:42:19+02:00"})
    assert offset.created_at == datetime(2025, 6, 4, 8, 42, 19, tzinfo=UTC)


def test_user_id_is_a_sid_only_when_it_is_one() -> None:
    posix = user(norm({**base(), "user_id": "1001", "user_principal": None}))
    assert posix.value == "p.nakamura"
    assert "sid" not in posix.aliases
    assert posix.attributes["user_id"] == "1001"
    no_logon_domain = user(norm({**base(), "logon_domain": None, "user_principal": None}))
    assert no_logon_domain.aliases["nt_account"] == "corp.example.com\\p.nakamura"
    mobile = user(norm({**base(), "user_name": "r.ito@example.com", "user_principal": None}))
    assert mobile.value == "r.ito@example.com"
    assert mobile.aliases["upn"] == "r.ito@example.com"


def test_device_id_falls_back_to_agent_id_and_ioc_becomes_an_entity() -> None:
    doc = base()
    del doc["device"]["device_id"]
    doc |= {"ioc_type": "domain", "ioc_value": "Update-Check.Example.NET"}
    alert = norm(doc)
    [host] = [e for e in alert.entities if e.type.value == "host"]
    assert host.aliases == {"falcon_aid": WIN_AID}
    assert ("domain", "update-check.example.net") in {
        (e.type.value, e.value) for e in alert.entities
    }


def test_inbound_and_unknown_network_directions() -> None:
    access = {"local_address": "10.20.31.231", "remote_address": "203.0.113.9"}
    inbound = norm({**base(), "network_accesses": [{**access, "connection_direction": "Inbound"}]})
    roles = {(e.value, e.role) for e in inbound.entities if e.type.value == "ip"}
    assert {("203.0.113.9", "source"), ("10.20.31.231", "destination")} <= roles
    odd = norm({**base(), "network_accesses": [{**access, "connection_direction": "Neither"}]})
    assert ("203.0.113.9", None) in {(e.value, e.role) for e in odd.entities}


def test_entity_cap_is_respected_on_huge_lists() -> None:
    doc = base()
    doc["network_accesses"] = [
        {
            "connection_direction": "Outbound",
            "remote_address": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
            "local_address": "10.20.31.231",
        }
        for i in range(20_000)
    ]
    doc["source_ips"] = [f"192.0.2.{i % 256}" for i in range(5_000)]
    alert = norm(doc, max_entities=5)
    assert len(alert.entities) == 5
    assert int(alert.labels[ENTITIES_TRUNCATED]) > 20_000


# --- garbage ----------------------------------------------------------------------------

GARBAGE = [
    # (what, change, words the message must contain)
    ("missing id", {"composite_id": None}, "composite_id"),
    ("empty id", {"composite_id": "  "}, "composite_id"),
    ("id object", {"composite_id": {"id": 1}}, "'composite_id' must be a string"),
    ("id list", {"composite_id": ["a:b"]}, "'composite_id' must be a string"),
    ("id bool", {"composite_id": True}, "'composite_id' must be a string"),
    ("id too long", {"composite_id": "x:" + "a" * 400}, "alert id is"),
    ("no title", {"name": None, "display_name": None}, "'name'"),
    ("title object", {"display_name": {"en": "x"}}, "'display_name' must be a string"),
    ("name list", {"name": ["a"], "display_name": None}, "'name' must be a string"),
    ("no time", {"created_timestamp": None, "timestamp": None}, "'created_timestamp'"),
    ("time garbage", {"created_timestamp": "yesterday"}, "'created_timestamp' must be an ISO"),
    ("time epoch", {"created_timestamp": 1749026539}, "'created_timestamp' must be an ISO"),
    ("time object", {"created_timestamp": {"t": 1}}, "'created_timestamp' must be a string"),
    ("event time garbage", {"timestamp": "2025-13-45T99:00:00Z"}, "'timestamp' must be an ISO"),
    ("severity word", {"severity": "high"}, "'severity' must be a number"),
    ("severity nan", {"severity": "NaN"}, "'severity' must be a number"),
    ("severity inf", {"severity": float("inf")}, "'severity' must be a number"),
    ("severity object", {"severity": {"score": 90}}, "'severity' must be a number"),
    ("severity_name list", {"severity_name": ["High"]}, "'severity_name' must be a string"),
    ("device string", {"device": "FIN-WS-0231"}, "'device' must be an object"),
    ("device list", {"device": [{"hostname": "a"}]}, "'device' must be an object"),
    ("parent string", {"parent_details": "explorer.exe"}, "'parent_details' must be an object"),
    ("grandparent list", {"grandparent_details": []}, "'grandparent_details' must be an object"),
    ("incident int", {"incident": 7}, "'incident' must be an object"),
    ("hostname object", {"device": {"hostname": {"a": 1}}}, "'device.hostname' must be a string"),
    ("user list", {"user_name": ["a", "b"]}, "'user_name' must be a string"),
    ("user_id object", {"user_id": {"sid": "S-1-5-18"}}, "'user_id' must be a string"),
    ("sha256 list", {"sha256": ["ab"]}, "'sha256' must be a string"),
    (
        "parent cmdline object",
        {"parent_details": {"cmdline": {"x": 1}}},
        "'parent_details.cmdline' must be a string",
    ),
    ("access not object", {"network_accesses": ["10.0.0.1"]}, "'network_accesses[0]'"),
    (
        "access address list",
        {"network_accesses": [{"remote_address": ["10.0.0.1"]}]},
        "'network_accesses[0].remote_address' must be a string",
    ),
    ("mitre item string", {"mitre_attack": ["T1003"]}, "'mitre_attack[0]' must be an object"),
    (
        "mitre technique object",
        {"mitre_attack": [{"technique_id": {"id": "T1003"}}]},
        "'mitre_attack[0].technique_id' must be a string",
    ),
    ("ioc_context item", {"ioc_context": [42]}, "'ioc_context[0]' must be an object"),
    ("source_ips object", {"source_ips": [{"ip": "1.2.3.4"}]}, "'source_ips[0]' must be a string"),
    ("users item", {"users": ["adm-backup"]}, "'users[0]' must be an object"),
    ("user_names bool", {"user_names": [True]}, "'user_names[0]' must be a string"),
    ("idp account object", {"source_account_upn": {"a": 1}}, "'source_account_upn'"),
    ("tactic list", {"tactic": ["Execution"]}, "'tactic' must be a string"),
    ("data_domains nested", {"data_domains": [["Endpoint"]]}, "'data_domains[0]'"),
]


@pytest.mark.parametrize(("what", "change", "words"), GARBAGE, ids=[g[0] for g in GARBAGE])
def test_garbage_raises_a_normalization_error_naming_the_field(
    what: str, change: dict[str, Any], words: str
) -> None:
    doc = {**base(), **change}
    with pytest.raises(NormalizationError) as info:
        crowdstrike_alert.normalize(doc)
    assert words in str(info.value), str(info.value)
    assert "crowdstrike_alert" in str(info.value)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.file)
def test_every_scalar_field_of_the_wrong_type_is_a_clear_error_or_ignored(case: Case) -> None:
    """Each top-level field replaced by an object or a list: a NormalizationError naming it,
    or (fields the normalizer does not read) an alert — never another exception."""
    doc = load(case.file)
    for key in doc:
        for bad in ({"nested": {"deeper": [1, 2]}}, [[{"x": None}]]):
            message = _error({**doc, key: bad})
            assert message is None or key in message, (key, message)


def _error(doc: dict[str, Any]) -> str | None:
    try:
        crowdstrike_alert.normalize(doc)
    except NormalizationError as exc:
        return str(exc)
    return None


def test_deeply_odd_values_are_survivable() -> None:
    deep: Any = "bottom"
    for _ in range(300):
        deep = {"d": deep}
    alert = norm({**base(), "crawl_edge_ids": deep, "pattern_disposition_details": deep})
    assert alert.original["crawl_edge_ids"] == deep
    weird = {
        **base(),
        "device": {"hostname": "[fin-ws]", "local_ip": "not-an-ip", "device_id": ""},
        "user_name": "-",
        "sha256": "0" * 64,
        "filename": "x" * 5000,
        "display_name": "T" * 5000,
        "description": "\u0000 odd \u202e",
        "technique_id": "T99999",
        "tactic_id": "TA9999",
        "mitre_attack": [None, {"technique_id": "t1059.001", "tactic": "execution"}],
        "network_accesses": [None],
    }
    alert = norm(weird)
    assert alert.title.endswith("…[truncated]")
    assert alert.techniques == ["T1059.001"]  # T99999 is not an ATT&CK id
    assert alert.tactics == ["Credential Access", "Execution"]
    kinds = {e.type.value for e in alert.entities}
    assert "host" not in kinds  # a bracketed hostname is dropped, not fatal
    assert int(alert.labels["ingest.entities_dropped"]) >= 2
    # A lone surrogate (valid JSON, not valid text) is a dead letter naming the field.
    with pytest.raises(NormalizationError, match="'description'"):
        norm({**base(), "description": "bad \ud800 text"})
