"""AWS Security Hub ASFF findings: expected alerts per fixture, detection, envelopes, garbage."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from soc_agent.errors import NormalizationError
from soc_agent.ingest import asff, detect
from soc_agent.models import Alert, Severity
from soc_agent.models.alert import ENTITIES_TRUNCATED

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
ALERTS = FIXTURES / "alerts"
OURS = ALERTS / "asff"
RECEIVED = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)

GD_SSH = "eventbridge_guardduty_ssh_bruteforce.json"
GD_IAM = "guardduty_iam_malicious_ip_caller.json"
CONTROL = "control_s3_public_read.json"
PARTNER = "custom_action_partner_edr.json"
PAGE = "getfindings_page_inspector_iam_user.json"


def load(name: str) -> Any:
    return json.loads((OURS / name).read_text(encoding="utf-8"))


def records(name: str) -> list[dict[str, Any]]:
    """A fixture as the payload layer hands it over: split by `expand`, else whole."""
    doc = load(name)
    return asff.expand(doc) or [doc]


def alerts(name: str, **kwargs: Any) -> list[Alert]:
    return [asff.normalize(r, received_at=RECEIVED, **kwargs) for r in records(name)]


def finding(doc: dict[str, Any]) -> dict[str, Any]:
    """The ASFF finding inside a fixture (EventBridge `detail.findings[0]` or bare)."""
    if "detail" in doc:
        inner: dict[str, Any] = doc["detail"]["findings"][0]
        return inner
    return doc


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


Ent = tuple[str, str, str | None, tuple[tuple[str, str], ...]]


def ent(kind: str, value: str, role: str | None, **aliases: str) -> Ent:
    return (kind, value, role, tuple(sorted(aliases.items())))


@dataclass(frozen=True)
class Case:
    file: str
    id: str
    severity: Severity
    created_at: datetime
    title: str
    rule_id: str
    rule_name: str
    vendor: str
    product: str
    entities: set[Ent]
    techniques: list[str] = field(default_factory=list)
    tactics: list[str] = field(default_factory=list)
    risk_score: float | None = None
    index: int = 0
    labels: dict[str, str] = field(default_factory=dict)


GD_SSH_ID = (
    "arn:aws:guardduty:eu-central-1:111122223333:detector/6ac1e8b09f2d4c7e83b5d41f0a9e2c67"
    "/finding/c4f1a0b2d3e49f58a67b8c9d0e1f2a3b"
)
GD_IAM_ID = (
    "arn:aws:guardduty:us-east-1:444455556666:detector/0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b"
    "/finding/7d2e9a41b0c35f86e1d4a7b92c08f513"
)

CASES = [
    Case(
        GD_SSH,
        f"asff:{GD_SSH_ID}",
        Severity.MEDIUM,
        utc(2025, 5, 14, 8, 1, 18, 402000),
        "203.0.113.87 is performing SSH brute force attacks against i-07b3e9c1d5a2f4680.",
        rule_id="UnauthorizedAccess:EC2/SSHBruteForce",  # rebuilt from the ASFF type
        rule_name="UnauthorizedAccess:EC2/SSHBruteForce",
        vendor="AWS",
        product="GuardDuty",
        entities={
            ent("host", "i-07b3e9c1d5a2f4680", "target", aws_instance_id="i-07b3e9c1d5a2f4680"),
            ent("ip", "198.51.100.24", "target"),
            ent("ip", "10.20.4.117", "target"),
            ent("ip", "203.0.113.87", "source"),  # ProductFields remote IP, INBOUND
        },
        techniques=["T1110"],  # the guardduty format's own table
        tactics=["Initial Access"],  # TTPs/Initial Access
        risk_score=40,
        labels={
            "guardduty_type": "UnauthorizedAccess:EC2/SSHBruteForce",
            "updated_at": "2025-05-14T08:16:05.917000+00:00",
            "connection_direction": "INBOUND",
            "resource_role": "TARGET",
            "guardduty_count": "31",
            "workflow_status": "NEW",
            "record_state": "ACTIVE",
            "account_id": "111122223333",
            "region": "eu-central-1",
        },
    ),
    Case(
        GD_IAM,
        f"asff:{GD_IAM_ID}",
        Severity.MEDIUM,
        utc(2025, 6, 2, 21, 22, 37, 118000),
        "API DescribeInstances was invoked from a known malicious IP address 192.0.2.66.",
        rule_id="UnauthorizedAccess:IAMUser/MaliciousIPCaller",
        rule_name="UnauthorizedAccess:IAMUser/MaliciousIPCaller",
        vendor="AWS",
        product="GuardDuty",
        entities={
            ent(
                "user",
                "deploy-bot",
                "actor",
                sam="deploy-bot",
                aws_principal_id="aidajqablzs4a3qdu576q",
            ),
            ent("cloud_resource", "AKIAZ7EXAMPLEK3Q9WD2", "target"),  # from the resource Id
            ent("ip", "192.0.2.66", "source"),
        },
        techniques=["T1078.004"],
        tactics=[],  # "TTPs/UnauthorizedAccess:..." names no category; the purpose is no tactic
        risk_score=50,
        labels={"api": "DescribeInstances", "api_service": "ec2.amazonaws.com"},
    ),
    Case(
        CONTROL,
        "asff:arn:aws:securityhub:eu-west-1:111122223333:security-control/S3.2/finding/"
        "3b8f5e21-6d4c-4a97-b0e3-9c1f7a2d5e86",
        Severity.CRITICAL,
        utc(2025, 3, 9, 16, 40, 12, 551000),
        "S3 general purpose buckets should block public read access",
        rule_id="security-control/S3.2",
        rule_name="S3 general purpose buckets should block public read access",
        vendor="AWS",
        product="Security Hub",
        entities={ent("cloud_resource", "arn:aws:s3:::acme-marketing-assets", "target")},
        risk_score=90,
        labels={
            "compliance_status": "FAILED",
            "security_control_id": "S3.2",
            "account_name": "acme-data-prod",
            "severity_original": "CRITICAL",
        },
    ),
    Case(
        PARTNER,
        # A non-ARN Id is only unique within its product: prefixed with the ProductArn.
        "asff:arn:aws:securityhub:us-west-2:111122223333:product/111122223333/default"
        "/edr-det-20250721-0042",
        Severity.HIGH,  # Normalized 75, no Label
        utc(2025, 7, 21, 12, 48, 19, 226000),
        "Encoded PowerShell downloaded and ran a payload on win-build-03",
        rule_id="edr-rule-ps-encoded-download",
        rule_name="Encoded PowerShell downloaded and ran a payload on win-build-03",
        vendor="Personal",
        product="Default",
        entities={
            ent("host", "i-0c5d7e9f1a3b5c7d9", "actor", aws_instance_id="i-0c5d7e9f1a3b5c7d9"),
            ent("ip", "10.40.12.31", "actor"),
            ent("cloud_resource", "edr-sensor://win-build-03", "target"),
            ent("ip", "10.40.12.31", "source"),
            ent("ip", "203.0.113.140", "destination"),
            ent("domain", "cdn-update.example.net", "destination"),
            ent("process", "powershell.exe", None),
            ent("domain", "cdn-update.example.net", None),  # threat intel indicator
            ent(
                "file_hash",
                "9f2b6c1d8e4a7053b1c9d2e6f8a0b3c5d7e9f1a2b4c6d8e0f2a4b6c8d0e2f4a6",
                None,
            ),
        },
        tactics=["Execution", "Command and Control"],
        risk_score=75,
        labels={
            "finding_id": "edr-det-20250721-0042",
            "severity_original": "8.1",
            "network_direction": "OUT",
            "destination_port": "443",
            "malware": "Trojan:Win64/Loader.EX",
            "malware_type": "TROJAN",
            "threats": "Trojan:Win64/Loader.EX",
            "workflow_status": "NOTIFIED",
            "user_defined.ticket": "SEC-4411",
        },
    ),
    Case(
        PAGE,
        "asff:arn:aws:inspector2:ap-southeast-2:444455556666:finding/e8c1f4a9b27d3056c19e8a4f7b2d6c03",
        Severity.HIGH,
        utc(2025, 2, 11, 3, 26, 54, 12000),
        "CVE-2024-6387 - openssh-server, openssh-clients",
        rule_id="AWSInspector",
        rule_name="CVE-2024-6387 - openssh-server, openssh-clients",
        vendor="AWS",
        product="Inspector",
        entities={
            ent("host", "i-0f4e3d2c1b0a98765", "target", aws_instance_id="i-0f4e3d2c1b0a98765"),
            ent("ip", "172.31.9.44", "target"),
        },
        risk_score=70,
        labels={"types": "Software and Configuration Checks/Vulnerabilities/CVE"},
    ),
    Case(
        PAGE,
        "asff:arn:aws:securityhub:ap-southeast-2:444455556666:security-control/IAM.3/finding/"
        "0a7c2e94-5b1d-4f38-9e6a-c3d8b7f1e520",
        Severity.MEDIUM,
        utc(2025, 2, 14, 6, 2, 31, 880000),
        "IAM users' access keys should be rotated every 90 days or less",
        rule_id="security-control/IAM.3",
        rule_name="IAM users' access keys should be rotated every 90 days or less",
        vendor="AWS",
        product="Security Hub",
        entities={
            ent(
                "user",
                "legacy-uploader",
                "target",
                sam="legacy-uploader",
                aws_user_id="aidar4example2kq7zp9m",
            )
        },
        risk_score=40,
        index=1,
        labels={"security_control_id": "IAM.3"},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.file}[{c.index}]")
def test_fixture_normalises_to_expected_alert(case: Case) -> None:
    alert = alerts(case.file)[case.index]
    assert alert.format == "asff"
    assert alert.id == case.id
    assert alert.source_id == case.id.removeprefix("asff:")
    assert alert.severity is case.severity
    assert alert.created_at == case.created_at
    assert alert.created_at.tzinfo is UTC
    assert alert.title == case.title
    assert (alert.rule.id, alert.rule.name) == (case.rule_id, case.rule_name)
    assert (alert.vendor, alert.product) == (case.vendor, case.product)
    got = {
        (e.type.value, e.value, e.role, tuple(sorted(e.aliases.items()))) for e in alert.entities
    }
    assert got == case.entities
    assert alert.techniques == case.techniques
    assert alert.tactics == case.tactics
    assert alert.risk_score == case.risk_score
    assert alert.received_at == RECEIVED
    for key, value in case.labels.items():
        assert alert.labels.get(key) == value, key


def test_every_fixture_is_in_the_table() -> None:
    assert {c.file for c in CASES} == {p.name for p in OURS.glob("*.json")}
    for name in {c.file for c in CASES}:
        assert len(alerts(name)) == sum(1 for c in CASES if c.file == name)


def test_entity_attributes_keep_what_responders_need() -> None:
    [iam] = alerts(GD_IAM)
    user = next(e for e in iam.entities if e.type.value == "user")
    assert user.attributes["access_key_id"] == "AKIAZ7EXAMPLEK3Q9WD2"
    assert user.attributes["principal_type"] == "IAMUser"
    key = next(e for e in iam.entities if e.type.value == "cloud_resource")
    assert key.attributes["resource_type"] == "AwsIamAccessKey"
    assert key.attributes["user_name"] == "deploy-bot"
    [ssh] = alerts(GD_SSH)
    host = next(e for e in ssh.entities if e.type.value == "host")
    assert host.attributes["arn"].endswith(":instance/i-07b3e9c1d5a2f4680")
    assert host.attributes["ips"] == "198.51.100.24,10.20.4.117"
    [partner] = alerts(PARTNER)
    process = next(e for e in partner.entities if e.type.value == "process")
    assert (process.attributes["pid"], process.attributes["parent_pid"]) == ("7316", "4480")
    digest = next(e for e in partner.entities if e.type.value == "file_hash")
    assert digest.attributes["algorithm"] == "sha256"


# --- detection ---------------------------------------------------------------------------


def _other_fixtures() -> list[Path]:
    files = [p for p in ALERTS.glob("*/*.json") if p.parent.name != "asff"]
    return sorted(files + list((FIXTURES / "wazuh").glob("*.json")))


def _docs(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    try:
        loaded = json.loads(text)
    except ValueError:
        loaded = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [d for d in (loaded if isinstance(loaded, list) else [loaded]) if isinstance(d, dict)]


def _other_formats() -> list[ModuleType]:
    modules = [
        m
        for m in vars(detect).values()
        if isinstance(m, ModuleType) and hasattr(m, "matches") and hasattr(m, "FORMAT")
    ]
    return [m for m in modules if m.FORMAT != asff.FORMAT]


@pytest.mark.parametrize("name", sorted(p.name for p in OURS.glob("*.json")))
def test_matches_our_fixtures_and_every_split_record(name: str) -> None:
    assert asff.matches(load(name))
    for record in records(name):
        assert asff.matches(record)


@pytest.mark.parametrize("path", _other_fixtures(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_does_not_match_other_formats_fixtures(path: Path) -> None:
    for doc in _docs(path):
        assert not asff.matches(doc)
        assert asff.expand(doc) is None  # a GuardDuty GetFindings body is not ours to split


def test_other_formats_are_listed() -> None:
    assert {m.FORMAT for m in _other_formats()} >= {"guardduty", "ocsf", "elastic", "ms_graph"}


@pytest.mark.parametrize("name", sorted(p.name for p in OURS.glob("*.json")))
def test_no_other_format_matches_our_fixtures(name: str) -> None:
    doc = load(name)
    candidates = [doc, *records(name), *(finding(r) for r in records(name))]
    for module in _other_formats():
        for candidate in candidates:
            assert not module.matches(candidate), module.FORMAT


def test_security_hub_v2_ocsf_event_and_insight_results_are_not_ours() -> None:
    v2 = {
        "version": "0",
        "detail-type": "Findings Imported V2",
        "source": "aws.securityhub",
        "detail": {"findings": [{"class_uid": 2004, "metadata": {"version": "1.1.0"}}]},
    }
    insight = {
        "version": "0",
        "detail-type": "Security Hub Insight Results",
        "source": "aws.securityhub",
        "detail": {"actionName": "x", "insightResults": [{"AWS::EC2::Instance": 3}]},
    }
    assert not asff.matches(v2)
    assert not asff.matches(insight)
    assert asff.expand(v2) is None


def test_matches_needs_the_asff_schema_version() -> None:
    doc = finding(load(GD_SSH))
    assert asff.matches(doc)
    assert not asff.matches({**doc, "SchemaVersion": "2.0"})  # GuardDuty's own schema
    assert not asff.matches({k: v for k, v in doc.items() if k != "ProductArn"})
    assert not asff.matches({"Findings": []})
    assert not asff.matches({"Findings": [{"SchemaVersion": "2.0", "Id": "x"}]})
    assert not asff.matches({"Findings": [doc], "Unexpected": 1})


# --- envelopes and ids -------------------------------------------------------------------


def test_getfindings_body_is_split_one_record_per_finding() -> None:
    doc = load(PAGE)
    split = asff.expand(doc)
    assert split is not None and split == doc["Findings"]
    assert asff.expand({"Findings": doc["Findings"]}) == doc["Findings"]  # without NextToken
    with pytest.raises(NormalizationError, match="asff: findings envelope holds 2 entries"):
        asff.normalize(doc)
    one = asff.normalize({"Findings": doc["Findings"][:1]})
    assert one.id == alerts(PAGE)[0].id


def test_eventbridge_envelope_with_one_finding_is_kept_whole() -> None:
    doc = load(GD_SSH)
    assert asff.expand(doc) is None  # AWS sends one finding per event: the event stays the record
    alert = asff.normalize(doc, received_at=RECEIVED)
    assert alert.original == doc
    bare = asff.normalize(finding(doc), received_at=RECEIVED)
    assert bare.id == alert.id
    assert bare.model_dump(exclude={"original"}) == alert.model_dump(exclude={"original"})


def test_eventbridge_envelope_with_several_findings_is_split() -> None:
    doc = load(PARTNER)
    second = copy.deepcopy(finding(doc))
    second["Id"] = "edr-det-20250721-0043"
    doc["detail"]["findings"].append(second)
    split = asff.expand(doc)
    assert split is not None and [f["Id"] for f in split] == [
        "edr-det-20250721-0042",
        "edr-det-20250721-0043",
    ]
    assert len({asff.normalize(f).id for f in split}) == 2
    with pytest.raises(NormalizationError, match="EventBridge envelope holds 2 findings"):
        asff.normalize(doc)


def test_normalize_does_not_mutate_and_keeps_the_original() -> None:
    for name in {c.file for c in CASES}:
        for record in records(name):
            pristine = copy.deepcopy(record)
            alert = asff.normalize(record)
            assert record == pristine
            assert alert.original == pristine


def test_an_update_is_a_redelivery_of_the_same_alert() -> None:
    first = finding(load(GD_SSH))
    update = copy.deepcopy(first)
    update["UpdatedAt"] = "2025-05-14T09:30:00.000Z"
    update["LastObservedAt"] = "2025-05-14T09:21:00Z"
    update["ProductFields"]["aws/guardduty/service/count"] = "58"
    update["Workflow"] = {"Status": "NOTIFIED"}
    update["Severity"] = {"Label": "HIGH", "Normalized": 70}
    a, b = asff.normalize(first), asff.normalize(update)
    assert a.id == b.id
    assert (a.labels["updated_at"], b.labels["updated_at"]) == (
        "2025-05-14T08:16:05.917000+00:00",
        "2025-05-14T09:30:00+00:00",
    )
    assert a.created_at == b.created_at  # CreatedAt does not move with updates
    reordered = json.loads(json.dumps(first, sort_keys=True))
    assert asff.normalize(reordered).id == a.id


def test_non_arn_ids_are_scoped_by_product() -> None:
    doc = finding(load(PARTNER))
    other = {**doc, "ProductArn": "arn:aws:securityhub:us-west-2::product/acme/edr"}
    assert asff.normalize(doc).id != asff.normalize(other).id
    numeric = {**doc, "Id": 90210}
    assert asff.normalize(numeric).id.endswith("/default/90210")


def test_created_at_falls_back_to_updated_at() -> None:
    doc = finding(load(CONTROL))
    del doc["CreatedAt"]
    assert asff.normalize(doc).created_at == utc(2025, 3, 10, 4, 5, 51, 734000)


# --- severity and ATT&CK -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "provider", "expected", "risk", "raw"),
    [
        ({"Label": "LOW"}, None, Severity.LOW, None, None),
        ({"Label": "informational"}, None, Severity.INFORMATIONAL, None, None),
        ({"Label": "CRITICAL", "Normalized": 10}, None, Severity.CRITICAL, 10, None),
        ({"Normalized": 0}, None, Severity.INFORMATIONAL, 0, None),
        ({"Normalized": 1}, None, Severity.LOW, 1, None),
        ({"Normalized": 39}, None, Severity.LOW, 39, None),
        ({"Normalized": 40}, None, Severity.MEDIUM, 40, None),
        ({"Normalized": 69.9}, None, Severity.MEDIUM, 69.9, None),
        ({"Normalized": 70}, None, Severity.HIGH, 70, None),
        ({"Normalized": 89}, None, Severity.HIGH, 89, None),
        ({"Normalized": 90}, None, Severity.CRITICAL, 90, None),
        ({"Normalized": 100}, None, Severity.CRITICAL, 100, None),
        ({"Normalized": "55"}, None, Severity.MEDIUM, 55, None),
        ({"Label": "SEVERE", "Normalized": 75}, None, Severity.HIGH, 75, "SEVERE"),
        ({"Label": "SEVERE"}, None, Severity.MEDIUM, None, "SEVERE"),
        ({"Label": "UNKNOWN"}, {"Label": "HIGH"}, Severity.HIGH, None, "UNKNOWN"),
        ({}, {"Label": "LOW"}, Severity.LOW, None, None),
        ({}, None, Severity.MEDIUM, None, "missing"),
        (None, None, Severity.MEDIUM, None, "missing"),
        ({"Normalized": 250}, None, Severity.MEDIUM, None, "250.0"),
        ({"Normalized": -3, "Label": "LOW"}, None, Severity.LOW, None, None),
        ({"Label": 4}, None, Severity.MEDIUM, None, "4"),
    ],
)
def test_severity_mapping(
    severity: dict[str, Any] | None,
    provider: dict[str, Any] | None,
    expected: Severity,
    risk: float | None,
    raw: str | None,
) -> None:
    doc = finding(load(CONTROL))
    doc.pop("FindingProviderFields")
    if severity is None:
        del doc["Severity"]
    else:
        doc["Severity"] = severity
    if provider is not None:
        doc["FindingProviderFields"] = {"Severity": provider}
    alert = asff.normalize(doc)
    assert alert.severity is expected
    assert alert.risk_score == risk
    assert alert.labels.get("severity_raw") == raw


@pytest.mark.parametrize(
    ("types", "tactics"),
    [
        (["TTPs/Defense Evasion/CloudTrailStopped"], ["Defense Evasion"]),
        (["TTPs/Defense Evasion"], ["Defense Evasion"]),
        (["TTPs"], []),
        (["TTPs/Impact/Ransom note dropped"], ["Impact"]),  # ATT&CK names past AWS's list
        (["TTPs/Exfiltration"], ["Exfiltration"]),
        (["TTPs/Not A Tactic/x"], []),
        (["Effects/Data Exfiltration"], []),  # only the TTPs namespace names tactics
        (["Unusual Behaviors/User"], []),
        (["Sensitive Data Identifications/PII"], []),
        (
            ["TTPs/Privilege Escalation", "TTPs/Privilege Escalation/y", "TTPs/Credential Access"],
            ["Privilege Escalation", "Credential Access"],
        ),
    ],
)
def test_ttps_categories_become_tactics(types: list[str], tactics: list[str]) -> None:
    doc = finding(load(PARTNER))
    doc["Types"] = types
    alert = asff.normalize(doc)
    assert alert.tactics == tactics
    assert alert.techniques == []


def test_provider_types_add_to_the_top_level_types() -> None:
    doc = finding(load(CONTROL))
    doc["FindingProviderFields"]["Types"] = ["TTPs/Discovery"]
    assert asff.normalize(doc).tactics == ["Discovery"]


@pytest.mark.parametrize(
    ("asff_type", "rule", "techniques", "tactics"),
    [
        (
            "TTPs/Discovery/Recon:EC2-PortProbeUnprotectedPort",
            "Recon:EC2/PortProbeUnprotectedPort",
            ["T1595"],
            ["Discovery"],
        ),
        ("TTPs/PenTest:IAMUser/KaliLinux", "PenTest:IAMUser/KaliLinux", [], []),
        (
            "Effects/Data Exfiltration/UnauthorizedAccess:IAMUser-InstanceCredentialExfiltration",
            "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration",
            ["T1552.005", "T1078.004"],
            [],
        ),
        (
            "TTPs/Discovery:S3-BucketEnumeration.Unusual",
            "Discovery:S3/BucketEnumeration.Unusual",
            ["T1580"],
            ["Discovery"],  # the GuardDuty threat purpose, as the guardduty format reads it
        ),
        (
            "TTPs/Command and Control/CryptoCurrency:EC2-BitcoinTool.B!DNS",
            "CryptoCurrency:EC2/BitcoinTool.B!DNS",
            ["T1496"],
            ["Command and Control"],
        ),
    ],
)
def test_guardduty_types_are_rebuilt(
    asff_type: str, rule: str, techniques: list[str], tactics: list[str]
) -> None:
    doc = finding(load(GD_SSH))
    doc["Types"] = [asff_type]
    doc["FindingProviderFields"]["Types"] = [asff_type]
    alert = asff.normalize(doc)
    assert (alert.rule.id, alert.rule.name) == (rule, rule)
    assert alert.techniques == techniques
    assert alert.tactics == tactics


def test_guardduty_like_types_from_other_products_are_not_rebuilt() -> None:
    doc = finding(load(PARTNER))
    doc["Types"] = ["TTPs/Initial Access/UnauthorizedAccess:EC2-SSHBruteForce"]
    alert = asff.normalize(doc)
    assert alert.rule.id == "edr-rule-ps-encoded-download"
    assert alert.techniques == []
    assert alert.tactics == ["Initial Access"]


# --- entity details ----------------------------------------------------------------------


def test_network_and_action_roles_follow_the_direction() -> None:
    doc = finding(load(GD_IAM))
    doc["Action"] = {
        "ActionType": "NETWORK_CONNECTION",
        "NetworkConnectionAction": {
            "ConnectionDirection": "OUTBOUND",
            "RemoteIpDetails": {"IpAddressV4": "198.51.100.9"},
            "RemotePortDetails": {"Port": 3333},
            "Protocol": "TCP",
        },
    }
    alert = asff.normalize(doc)
    assert ("198.51.100.9", "destination") in {(e.value, e.role) for e in alert.entities}
    doc["Action"]["NetworkConnectionAction"]["ConnectionDirection"] = "INBOUND"
    alert = asff.normalize(doc)
    assert ("198.51.100.9", "source") in {(e.value, e.role) for e in alert.entities}
    doc["Action"] = {
        "ActionType": "PORT_PROBE",
        "PortProbeAction": {
            "PortProbeDetails": [
                {
                    "LocalIpDetails": {"IpAddressV4": "10.1.2.3"},
                    "RemoteIpDetails": {"IpAddressV4": "192.0.2.200"},
                }
            ]
        },
    }
    roles = {(e.value, e.role) for e in asff.normalize(doc).entities}
    assert {("192.0.2.200", "source"), ("10.1.2.3", "target")} <= roles
    doc["Action"] = {"ActionType": "DNS_REQUEST", "DnsRequestAction": {"Domain": "c2.example"}}
    keys = {(e.type.value, e.value, e.role) for e in asff.normalize(doc).entities}
    assert ("domain", "c2.example", "destination") in keys


def test_outbound_guardduty_product_fields_make_the_remote_ip_a_destination() -> None:
    doc = finding(load(GD_SSH))
    fields = doc["ProductFields"]
    fields["aws/guardduty/service/action/networkConnectionAction/connectionDirection"] = "OUTBOUND"
    roles = {(e.value, e.role) for e in asff.normalize(doc).entities}
    assert ("203.0.113.87", "destination") in roles
    assert ("10.20.4.117", "target") in roles


def test_odd_resources_keep_what_can_be_named() -> None:
    doc = finding(load(CONTROL))
    doc["Resources"] = [
        {"Type": "AwsEc2Instance", "Id": "i-0123456789abcdef0"},  # bare instance id
        {"Type": "AwsEc2Instance", "Id": "arn:aws:ec2:eu-west-1:1:volume/vol-1"},  # not one
        {"Type": "AwsIamUser", "Id": "arn:aws:iam::111122223333:user/ghost"},  # no details
        {"Type": "AwsIamAccessKey", "Id": "AWS::IAM::AccessKey:", "Details": {}},
        {"Type": "AwsS3Bucket"},  # no Id: nothing to name
        {"Type": "AwsEc2Instance", "Id": "i-0fedcba9876543210", "Details": {"AwsEc2Instance": {
            "IpV4Addresses": ["not-an-ip", "10.9.8.7"]}}},
    ]  # fmt: skip
    alert = asff.normalize(doc)
    keys = {(e.type.value, e.value, e.role) for e in alert.entities}
    assert keys == {
        ("host", "i-0123456789abcdef0", "target"),
        ("cloud_resource", "arn:aws:ec2:eu-west-1:1:volume/vol-1", "target"),
        ("cloud_resource", "arn:aws:iam::111122223333:user/ghost", "target"),
        ("cloud_resource", "AWS::IAM::AccessKey:", "target"),
        ("host", "i-0fedcba9876543210", "target"),
        ("ip", "10.9.8.7", "target"),
    }
    assert alert.labels["ingest.entities_dropped"] == "1"  # the IP that is none


def test_threat_hashes_need_a_real_digest_and_indicators_a_known_type() -> None:
    doc = finding(load(PARTNER))
    doc.pop("ThreatIntelIndicators")
    doc["Threats"] = [
        {"Name": "x", "FilePaths": [{"FilePath": "/tmp/b.txt", "Hash": "sha256"}]},
        {"Name": "y", "FilePaths": [{"Hash": "d41d8cd98f00b204e9800998ecf8427e"}]},
        {"Name": "z", "FilePaths": [{"FilePath": "/tmp/c"}]},
    ]
    alert = asff.normalize(doc)
    hashes = [e for e in alert.entities if e.type.value == "file_hash"]
    assert [(h.value, h.attributes["algorithm"]) for h in hashes] == [
        ("d41d8cd98f00b204e9800998ecf8427e", "md5")
    ]
    assert alert.labels["threats"] == "x,y,z"
    assert alert.labels["ingest.entities_dropped"] == "1"
    doc["ThreatIntelIndicators"] = [
        {"Type": "IPV4_ADDRESS", "Value": "192.0.2.1"},
        {"Type": "URL", "Value": "https://bad.example/x"},
        {"Type": "EMAIL_ADDRESS", "Value": "ops@bad.example"},
        {"Type": "HASH_SHA1", "Value": "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
        {"Type": "PROCESS", "Value": "xmrig"},
        {"Type": "MUTEX", "Value": "Global\\m"},
        {"Type": "SOMETHING_NEW", "Value": "v"},
        {"Value": "no-type"},
    ]
    kinds = {(e.type.value, e.value) for e in asff.normalize(doc).entities if e.role is None}
    assert {
        ("ip", "192.0.2.1"),
        ("url", "https://bad.example/x"),
        ("email", "ops@bad.example"),
        ("file_hash", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        ("process", "xmrig"),
    } <= kinds
    assert not {"Global\\m", "v", "no-type"} & {v for _, v in kinds}  # MUTEX, unknown, untyped


def test_process_without_name_is_named_by_its_path() -> None:
    doc = finding(load(PARTNER))
    doc["Process"] = {"Path": "/usr/bin/curl", "Pid": 55}
    procs = [e for e in asff.normalize(doc).entities if e.type.value == "process"]
    assert [(p.value, p.attributes["pid"]) for p in procs] == [("curl", "55")]


def test_user_defined_fields_are_capped() -> None:
    doc = finding(load(PARTNER))
    doc["UserDefinedFields"] = {f"k{i}": f"v{i}" for i in range(50)}
    labels = asff.normalize(doc).labels
    assert sum(1 for k in labels if k.startswith("user_defined.")) == 20


# --- limits and garbage ------------------------------------------------------------------


def test_entity_cap_is_respected_on_huge_lists() -> None:
    doc = finding(load(CONTROL))
    doc["Resources"] = [
        {"Type": "AwsS3Bucket", "Id": f"arn:aws:s3:::bucket-{i}"} for i in range(5000)
    ]
    doc["ThreatIntelIndicators"] = [
        {"Type": "IPV4_ADDRESS", "Value": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"}
        for i in range(5000)
    ]
    alert = asff.normalize(doc, max_entities=5)
    assert len(alert.entities) == 5
    assert alert.labels[ENTITIES_TRUNCATED] == "9995"
    ec2 = finding(load(GD_SSH))
    addresses = [f"10.0.{i // 256}.{i % 256}" for i in range(3000)]
    ec2["Resources"][0]["Details"]["AwsEc2Instance"]["IpV4Addresses"] = addresses
    alert = asff.normalize(ec2, max_entities=5)
    assert len(alert.entities) == 5
    assert int(alert.labels[ENTITIES_TRUNCATED]) >= 2995


def test_long_texts_are_truncated_and_an_overlong_id_is_refused() -> None:
    doc = finding(load(CONTROL))
    doc["Title"] = "T" * 100_000
    doc["Description"] = "D" * 100_000
    alert = asff.normalize(doc)
    assert len(alert.title) == 1024 and len(alert.description or "") == 16384
    doc["Id"] = "arn:" + "x" * 400
    with pytest.raises(NormalizationError, match="asff: alert id is"):
        asff.normalize(doc)


Path_ = tuple[str | int, ...]
DELETE = object()


def _set(doc: Any, path: Path_, value: Any) -> None:
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value


R0: Path_ = ("Resources", 0)
GARBAGE: list[tuple[str, Path_, Any, str]] = [
    (CONTROL, ("Id",), DELETE, "missing required field 'Id'"),
    (CONTROL, ("Id",), {"a": 1}, "field 'Id' must be a string, got object"),
    (CONTROL, ("Id",), True, "field 'Id' must be a string, got bool"),
    (CONTROL, ("Id",), "   ", "missing required field 'Id'"),
    (CONTROL, ("ProductArn",), DELETE, "missing required field 'ProductArn'"),
    (CONTROL, ("ProductArn",), ["arn"], "field 'ProductArn' must be a string, got array"),
    (CONTROL, ("Title",), DELETE, "missing required field 'Title'"),
    (CONTROL, ("Title",), {"t": 1}, "field 'Title' must be a string"),
    (CONTROL, ("Description",), [1], "field 'Description' must be a string"),
    (CONTROL, ("GeneratorId",), {}, "field 'GeneratorId' must be a string"),
    (CONTROL, ("AwsAccountId",), [], "field 'AwsAccountId' must be a string"),
    (CONTROL, ("CreatedAt",), "yesterday", "field 'CreatedAt' must be an ISO 8601 time"),
    (CONTROL, ("CreatedAt",), 1717000000, "field 'CreatedAt' must be an ISO 8601 time"),
    (CONTROL, ("CreatedAt",), {}, "field 'CreatedAt' must be an ISO 8601 time"),
    (CONTROL, ("UpdatedAt",), "2025-13-45T99:00:00Z", "field 'UpdatedAt' must be an ISO"),
    (CONTROL, ("FirstObservedAt",), [], "field 'FirstObservedAt' must be an ISO"),
    (CONTROL, ("Severity",), "CRITICAL", "field 'Severity' must be an object"),
    (CONTROL, ("Severity", "Label"), {"x": 1}, "field 'Severity.Label' must be a string"),
    (CONTROL, ("Severity", "Normalized"), "high", "field 'Severity.Normalized' must be a number"),
    (CONTROL, ("Severity", "Normalized"), float("inf"), "'Severity.Normalized' must be a number"),
    (CONTROL, ("Severity", "Normalized"), True, "'Severity.Normalized' must be a number"),
    (CONTROL, ("Severity", "Original"), [], "field 'Severity.Original' must be a string"),
    (CONTROL, ("FindingProviderFields",), [], "field 'FindingProviderFields' must be an object"),
    (CONTROL, ("FindingProviderFields", "Severity"), 3, "'FindingProviderFields.Severity' must"),
    (CONTROL, ("FindingProviderFields", "Types"), "x", "'FindingProviderFields.Types' must be"),
    (CONTROL, ("Types",), "TTPs/Discovery", "field 'Types' must be an array"),
    (CONTROL, ("Types",), ["TTPs", 7], "field 'Types[1]' must be a string"),
    (CONTROL, ("Resources",), {"Type": "AwsS3Bucket"}, "field 'Resources' must be an array"),
    (CONTROL, ("Resources",), ["arn:aws:s3:::b"], "field 'Resources[0]' must be an object"),
    (CONTROL, (*R0, "Id"), {"a": 1}, "field 'Resources[0].Id' must be a string"),
    (CONTROL, (*R0, "Type"), ["AwsS3Bucket"], "field 'Resources[0].Type' must be a string"),
    (CONTROL, (*R0, "Region"), {}, "field 'Resources[0].Region' must be a string"),
    (CONTROL, (*R0, "ResourceRole"), [], "'Resources[0].ResourceRole' must"),
    (CONTROL, (*R0, "Details"), [], "field 'Resources[0].Details' must be an object"),
    (GD_SSH, (*R0, "Details", "AwsEc2Instance"), "x", "'Resources[0].Details.AwsEc2Instance'"),
    (
        GD_SSH,
        (*R0, "Details", "AwsEc2Instance", "IpV4Addresses"),
        "10.0.0.1",
        "'Resources[0].Details.AwsEc2Instance.IpV4Addresses' must be an array",
    ),
    (
        GD_SSH,
        (*R0, "Details", "AwsEc2Instance", "IpV4Addresses"),
        [{"ip": "10.0.0.1"}],
        "'Resources[0].Details.AwsEc2Instance.IpV4Addresses[0]' must be a string",
    ),
    (GD_SSH, (*R0, "Details", "AwsEc2Instance", "Type"), {}, "AwsEc2Instance.Type' must be"),
    (GD_IAM, (*R0, "Details", "AwsIamAccessKey"), [], "'Resources[0].Details.AwsIamAccessKey'"),
    (
        GD_IAM,
        (*R0, "Details", "AwsIamAccessKey", "PrincipalName"),
        {"n": 1},
        "'Resources[0].Details.AwsIamAccessKey.PrincipalName' must be a string",
    ),
    (PAGE, ("Findings", 1, *R0, "Details", "AwsIamUser"), "u", "'Resources[0].Details.AwsIamUser'"),
    (
        PAGE,
        ("Findings", 1, *R0, "Details", "AwsIamUser", "UserName"),
        ["u"],
        "'Resources[0].Details.AwsIamUser.UserName' must be a string",
    ),
    (PARTNER, ("Network",), [], "field 'Network' must be an object"),
    (PARTNER, ("Network", "SourceIpV4"), {}, "field 'Network.SourceIpV4' must be a string"),
    (PARTNER, ("Network", "DestinationPort"), [443], "'Network.DestinationPort' must be"),
    (PARTNER, ("Process",), "powershell.exe", "field 'Process' must be an object"),
    (PARTNER, ("Process", "Pid"), {"v": 1}, "field 'Process.Pid' must be a string"),
    (PARTNER, ("Malware",), {"Name": "x"}, "field 'Malware' must be an array"),
    (PARTNER, ("Malware",), [1], "field 'Malware[0]' must be an object"),
    (PARTNER, ("Malware", 0, "Name"), [], "field 'Malware[0].Name' must be a string"),
    (PARTNER, ("ThreatIntelIndicators",), {}, "field 'ThreatIntelIndicators' must be an array"),
    (PARTNER, ("ThreatIntelIndicators",), ["x"], "'ThreatIntelIndicators[0]' must be an object"),
    (PARTNER, ("ThreatIntelIndicators", 1, "Value"), {}, "'ThreatIntelIndicators[1].Value'"),
    (PARTNER, ("Threats",), "t", "field 'Threats' must be an array"),
    (PARTNER, ("Threats", 0, "FilePaths"), {}, "field 'Threats[0].FilePaths' must be an array"),
    (PARTNER, ("Threats", 0, "FilePaths"), [None], "'Threats[0].FilePaths[0]' must be an object"),
    (PARTNER, ("Threats", 0, "FilePaths", 0, "Hash"), [], "'Threats[0].FilePaths[0].Hash'"),
    (PARTNER, ("UserDefinedFields",), [], "field 'UserDefinedFields' must be an object"),
    (PARTNER, ("UserDefinedFields", "ticket"), {}, "'UserDefinedFields.ticket' must be a string"),
    (PARTNER, ("Workflow",), "NEW", "field 'Workflow' must be an object"),
    (PARTNER, ("Workflow", "Status"), ["NEW"], "field 'Workflow.Status' must be a string"),
    (PARTNER, ("RecordState",), {}, "field 'RecordState' must be a string"),
    (CONTROL, ("Compliance",), "FAILED", "field 'Compliance' must be an object"),
    (CONTROL, ("Compliance", "Status"), {}, "field 'Compliance.Status' must be a string"),
    (CONTROL, ("ProductFields",), "x", "field 'ProductFields' must be an object"),
    (CONTROL, ("ProductName",), {}, "field 'ProductName' must be a string"),
    (
        GD_SSH,
        ("ProductFields", "aws/guardduty/service/resourceRole"),
        {"r": 1},
        "field 'ProductFields.resourceRole' must be a string",
    ),
    (
        GD_SSH,
        (
            "ProductFields",
            "aws/guardduty/service/action/networkConnectionAction/remoteIpDetails/ipAddressV4",
        ),
        ["203.0.113.87"],
        "remoteIpDetails/ipAddressV4' must be a string",
    ),
    (GD_IAM, ("Action",), "AWS_API_CALL", "field 'Action' must be an object"),
    (GD_IAM, ("Action", "AwsApiCallAction"), [], "field 'Action.AwsApiCallAction' must be"),
    (
        GD_IAM,
        ("Action", "AwsApiCallAction", "RemoteIpDetails"),
        "192.0.2.66",
        "field 'Action.AwsApiCallAction.RemoteIpDetails' must be an object",
    ),
    (
        GD_IAM,
        ("Action", "AwsApiCallAction", "RemoteIpDetails", "IpAddressV4"),
        {},
        "'Action.AwsApiCallAction.RemoteIpDetails.IpAddressV4' must be a string",
    ),
    (
        GD_IAM,
        ("Action", "AwsApiCallAction", "RemoteIpDetails", "Country"),
        "NL",
        "'Action.AwsApiCallAction.RemoteIpDetails.Country' must be an object",
    ),
    (GD_IAM, ("Action", "AwsApiCallAction", "Api"), [], "'Action.AwsApiCallAction.Api' must"),
]


@pytest.mark.parametrize(
    ("name", "path", "value", "message"),
    GARBAGE,
    ids=[f"{n.split('_')[0]}:{'.'.join(map(str, p))}" for n, p, _, _ in GARBAGE],
)
def test_garbage_raises_a_normalization_error_naming_the_field(
    name: str, path: Path_, value: Any, message: str
) -> None:
    doc = load(name)
    if name == PAGE:
        target: Any = doc
    else:
        target = finding(doc)
    _set(target, path, value)
    record = target["Findings"][int(path[1])] if name == PAGE else doc
    with pytest.raises(NormalizationError) as caught:
        asff.normalize(record)
    text = str(caught.value)
    assert text.startswith("asff: ")
    assert message in text


@pytest.mark.parametrize(
    ("detail", "message"),
    [
        (DELETE, "EventBridge envelope has no finding"),
        ("findings", "EventBridge envelope has no finding"),
        ({}, "EventBridge envelope has no finding"),
        ({"findings": []}, "EventBridge envelope has no finding"),
        ({"findings": {"Id": "x"}}, "EventBridge envelope has no finding"),
        ({"findings": ["x"]}, "field 'detail.findings[0]' must be an object"),
        ({"findings": [None]}, "field 'detail.findings[0]' must be an object"),
        ({"findings": [{}]}, "missing required field 'Id'"),
    ],
)
def test_broken_envelopes_raise_clear_errors(detail: Any, message: str) -> None:
    doc = load(GD_SSH)
    _set(doc, ("detail",), detail)
    assert asff.matches(doc)
    with pytest.raises(NormalizationError) as caught:
        asff.normalize(doc)
    assert str(caught.value).startswith(f"asff: {message}")


ODD_VALUES: list[Any] = [None, True, 0, -1.5, "", " ", "x", [], {}, ["x"], [{}], {"a": {"b": []}}]


def _paths(node: Any, prefix: Path_ = ()) -> list[Path_]:
    out: list[Path_] = []
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in list(items)[:40]:
        out.append((*prefix, key))
        if isinstance(value, dict | list):
            out.extend(_paths(value, (*prefix, key)))
    return out


@pytest.mark.parametrize("name", [GD_SSH, GD_IAM, CONTROL, PARTNER])
def test_any_odd_value_anywhere_gives_an_alert_or_a_normalization_error(name: str) -> None:
    base = finding(load(name))
    outcomes: list[str] = []
    for path in _paths(base):
        for value in ODD_VALUES:
            doc = copy.deepcopy(base)
            _set(doc, path, value)
            try:
                outcomes.append(asff.normalize(doc).id)
            except NormalizationError as exc:
                outcomes.append(str(exc))
    assert len(outcomes) > 500
    assert all(o.startswith(("asff:", "asff: ")) for o in outcomes)
    assert any(o.startswith("asff: field") for o in outcomes)


def test_deep_nesting_in_unread_fields_is_harmless() -> None:
    doc = finding(load(PARTNER))
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(200):
        node["n"] = {}
        node = node["n"]
    doc["Resources"][1]["Details"]["Other"] = deep
    assert asff.normalize(doc).id.startswith("asff:")
