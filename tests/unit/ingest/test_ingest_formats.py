"""Table-driven checks of every vendor fixture: ids, severity, times, entities, techniques."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from soc_agent.ingest import FORMATS, detect_format, normalize, parse_payload
from soc_agent.models import Alert, Severity

ALERTS = Path(__file__).resolve().parents[2] / "fixtures" / "alerts"
RECEIVED = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
VENDOR_FORMATS = ("elastic", "ocsf", "suricata", "guardduty", "ms_graph", "crowdstrike", "splunk")
# Formats whose expected alerts are tabled in their own test module (test_<format>.py);
# their fixtures still go through detection, hints and stable ids here.
OWN_TABLE_FORMATS = ("crowdstrike_alert", "sentinel", "asff", "wazuh")


def fixture_bytes(relative: str) -> bytes:
    return (ALERTS / relative).read_bytes()


def fixture_doc(relative: str) -> Any:
    return json.loads(fixture_bytes(relative))


def vendor_fixture_files(formats: tuple[str, ...] = VENDOR_FORMATS) -> list[str]:
    return sorted(f"{fmt}/{path.name}" for fmt in formats for path in (ALERTS / fmt).glob("*.json"))


ALL_FIXTURES = vendor_fixture_files(VENDOR_FORMATS + OWN_TABLE_FORMATS)


Ent = tuple[str, str, str | None]


@dataclass(frozen=True)
class Case:
    file: str
    id: str
    severity: Severity
    created_at: datetime
    title: str
    entities: set[Ent]
    techniques: list[str] = field(default_factory=list)
    tactics: list[str] = field(default_factory=list)
    risk_score: float | None = None
    rule_id: str | None = None
    vendor: str | None = None
    product: str | None = None
    index: int = 0  # position of the alert in the file's payload
    labels: dict[str, str] = field(default_factory=dict)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


CASES = [
    # --- Elastic Security -----------------------------------------------------------------
    Case(
        "elastic/encoded_powershell_flattened.json",
        "elastic:0c6a4f3e9b1d2e5f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f",
        Severity.HIGH,
        utc(2025, 3, 11, 9, 14, 27, 512000),
        "Suspicious PowerShell Encoded Command",
        {
            ("host", "win-fin-07", None),
            ("user", "alice.nguyen", None),
            ("process", "powershell.exe", None),
            ("process", "cmd.exe", "parent"),
            ("file_hash", "de96a6e69944335375dc1ac238336066889d9ffc7d73628ef4fe1b1b160ab32c", None),
            ("file_hash", "7353f60b1739074eb17c5f4dddefe239", None),
        },
        ["T1059", "T1059.001", "T1027"],
        ["Execution", "Defense Evasion"],
        risk_score=73,
        rule_id="a1f6b3c2-7d8e-4f90-8a1b-2c3d4e5f6a7b",
        vendor="Elastic",
        labels={"original_time": "2025-03-11T09:14:21.004Z", "workflow_status": "open"},
    ),
    Case(
        "elastic/ssh_brute_force_nested.json",
        "elastic:5d0e3c1b2a9f8e7d6c5b4a3928172635445362718190a1b2c3d4e5f60718293a",
        Severity.MEDIUM,
        utc(2025, 2, 2, 22, 41, 5),
        "Potential SSH Brute Force Detected",
        {
            ("host", "bastion-01.prod.example.net", None),
            ("user", "root", None),
            ("ip", "203.0.113.45", "source"),
            ("ip", "10.0.5.20", "destination"),
        },
        ["T1110", "T1110.001"],
        ["Credential Access"],
        risk_score=47,
        rule_id="4e2d7c88-91a3-4b5e-bc11-0f6e2a9d3c54",
        labels={"rule_type": "threshold"},
    ),
    Case(
        "elastic/dns_tunnel_search_hit.json",
        "elastic:f3b1c2d4e5a6978812345678901234567890abcdefabcdefabcdefabcdef1234",
        Severity.CRITICAL,
        utc(2025, 4, 18, 3, 2, 11, 873000),
        "DNS Tunneling via Long TXT Queries",
        {
            ("host", "ws-mkt-112", None),
            ("ip", "10.31.8.112", "source"),
            ("ip", "198.51.100.53", "destination"),
            ("domain", "a3f9c1.x7k2.tunnel-cdn.example", "destination"),
        },
        ["T1071", "T1071.004"],
        ["Command and Control"],
        risk_score=99,
        labels={"index": ".internal.alerts-security.alerts-default-000004"},
    ),
    Case(
        "elastic/ml_anomaly_mixed_keys.json",
        "elastic:c0ffee00-1234-4cde-8f00-abcdefabcdef",
        Severity.LOW,  # no severity word: derived from risk_score 21
        utc(2025, 3, 3, 11, 6, 40),  # @timestamp given as epoch milliseconds
        "Unusual Process for a Linux Host",
        {("host", "db-replica-3", None)},  # "-" process and all-zero hash are not entities
        risk_score=21,
        rule_id="77aa88bb-99cc-4dd0-8ee1-ff0011223344",
    ),
    # --- OCSF -----------------------------------------------------------------------------
    Case(
        "ocsf/detection_finding_securityhub_ssh.json",
        "ocsf:arn:aws:securityhub:us-east-1:111122223333:finding/2c4d6e8fa0b2c4d6e8fa0b2c4d6e8fa0",
        Severity.HIGH,
        utc(2025, 2, 27, 10, 30),
        "SSH brute force attack against EC2 instance i-0a1b2c3d4e5f67890",
        {
            ("ip", "198.51.100.77", "source"),
            ("ip", "172.31.10.25", "destination"),
            ("cloud_resource", "i-0a1b2c3d4e5f67890", "destination"),
            (
                "cloud_resource",
                "arn:aws:ec2:us-east-1:111122223333:instance/i-0a1b2c3d4e5f67890",
                "target",
            ),
        },
        ["T1110"],
        ["Credential Access"],
        rule_id="UnauthorizedAccess:EC2/SSHBruteForce",
        vendor="AWS",
        product="Security Hub",
        labels={"class_uid": "2004", "cloud.account": "111122223333"},
    ),
    Case(
        "ocsf/detection_finding_edr_lsass.json",
        "ocsf:ldt:8d2e0f4a9b3c4d5e:902113",
        Severity.CRITICAL,
        utc(2025, 3, 25, 8, 14, 1, 337000),
        "Credential dumping from LSASS memory",
        {
            ("host", "fs-cluster-02", None),
            ("ip", "10.40.2.12", None),
            ("user", "svc_backup", "actor"),
            ("process", "rundll32.exe", "actor"),
            (
                "file_hash",
                "6fe9dc1a8e4c0f2f0c1b7c5b2e3a9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b",
                "actor",
            ),
            ("process", "lsass.exe", None),
            ("ip", "10.40.0.5", "destination"),
            ("host", "dc01.corp.example.com", "destination"),
        },
        ["T1003", "T1003.001"],
        ["Credential Access"],
        risk_score=92,
        rule_id="41021",
        vendor="CrowdStrike",
        product="Falcon Insight",
    ),
    Case(
        "ocsf/security_finding_v1_0_web.json",
        "ocsf:waf-5f0a91c2-7e11-4b9c-a0c4-0d5a77e6f3a1",
        Severity.MEDIUM,
        utc(2024, 12, 5, 12, 45, 0, 123000),
        "SQL injection attempt blocked on /api/v2/orders",
        {
            ("ip", "192.0.2.200", "source"),
            ("host", "shop.example.com", "destination"),
            ("url", "https://shop.example.com/api/v2/orders?id=1%27%20OR%201=1--", None),
            ("domain", "shop.example.com", None),  # the url's host
        },
        ["T1190"],
        ["Initial Access"],
        vendor="Fastly",
        labels={"class_uid": "2001"},
    ),
    Case(
        "ocsf/detection_finding_unknown_severity.json",
        "ocsf:a8c0d5e1f2b34c5d9e6f7a8b9c0d1e2f",
        Severity.MEDIUM,  # severity_id 0 (Unknown) never hides an alert
        utc(2025, 5, 1),
        "Okta admin role assigned outside change window",
        {("user", "j.doe@example.com", "actor"), ("email", "j.doe@example.com", "actor")},
        labels={"severity_raw": "Unknown"},
    ),
    Case(
        "ocsf/detection_finding_phish_evidences.json",
        "ocsf:etd-2025-05-13-0091874",
        Severity.HIGH,
        utc(2025, 5, 13, 9, 23, 5),
        "Phishing message with malicious HTML attachment opened",
        {
            # evidences[0]: the message, its link and its attachment
            ("email", "dse@docu-sign-notice.example", "sender"),  # "DocuSign <dse@...>"
            ("email", "bounce-0091874@mailer.docu-sign-notice.example", "sender"),  # smtp_from
            ("email", "agreements@docu-sign-support.example", "reply_to"),
            ("email", "k.ibrahim@northwind.example", "recipient"),
            ("email", "finance-ap@northwind.example", "recipient"),  # cc
            ("ip", "203.0.113.58", "source"),  # x_originating_ip
            ("url", "https://docu-sign-notice.example/envelope/9b1f?u=k.ibrahim", None),
            ("domain", "docu-sign-notice.example", None),
            (
                "file_hash",
                "8c1e5b7a2f4d6e9c0b3a5d7f9e1c3b5a7d9f1e3c5b7a9d1f3e5c7b9a1d3f5e7c",
                None,
            ),
            # evidences[1]: who opened it, where, and what ran
            ("user", "k.ibrahim", "actor"),
            ("email", "k.ibrahim@northwind.example", "actor"),
            ("process", "mshta.exe", None),
            ("process", "msedge.exe", "parent"),
            (
                "file_hash",
                "2e0a7b91d3c5f7e9a1b3d5f7e9c1a3b5d7f9e1c3a5b7d9f1e3c5a7b9d1f3e5a7",
                None,
            ),
            ("ip", "10.12.30.117", "source"),
            ("host", "fin-lt-0117", "source"),
            ("ip", "198.51.100.73", "destination"),
            ("host", "cdn.docu-sign-notice.example", "destination"),
        },
        ["T1566", "T1566.001", "T1204", "T1204.002"],
        ["Initial Access", "Execution"],
        rule_id="ETD-R-1142",
        vendor="Northwind Security",
        labels={"ocsf_version": "1.1.0"},
    ),
    # --- Suricata EVE ---------------------------------------------------------------------
    Case(
        "suricata/et_malware_http_c2.json",
        "suricata:b6488acf58303f73fa7856f1baaa3f6b",
        Severity.HIGH,
        utc(2025, 5, 6, 14, 22, 31, 418823),
        "ET MALWARE Cobalt Strike Beacon Observed",
        {
            ("ip", "10.12.7.44", "source"),
            ("ip", "185.220.101.34", "destination"),
            ("domain", "cdn-update.example-cloud.net", "destination"),
            ("url", "http://cdn-update.example-cloud.net:8080/jquery-3.3.1.min.js", "destination"),
        },
        ["T1071"],
        ["Command and Control"],
        rule_id="2035463",
        vendor="OISF",
        labels={"flow_id": "1847302994127365", "sensor": "ids-dmz-01"},
    ),
    Case(
        "suricata/tls_sni_policy.json",
        "suricata:e5d3ff961888bdeb6ab75a09c07fd22b",
        Severity.MEDIUM,
        datetime(2025, 5, 6, 15, 3, 10, 3112, tzinfo=timezone(timedelta(hours=2))),
        "ET POLICY Observed DNS over HTTPS Domain (cloudflare-dns .com in TLS SNI)",
        {
            ("ip", "192.168.40.23", "source"),
            ("ip", "104.16.85.20", "destination"),
            ("domain", "cloudflare-dns.com", "destination"),
        },
        rule_id="2027695",
    ),
    Case(
        "suricata/dns_query_targeted.json",
        "suricata:453524dbac560a428bc53e00502bcec2",
        Severity.LOW,
        utc(2025, 5, 7, 2, 11, 45, 550010),
        "ET INFO Observed DNS Query to .top TLD",
        {
            ("ip", "10.8.0.15", "attacker"),
            ("ip", "10.8.0.2", "target"),
            ("ip", "10.8.0.15", "source"),
            ("ip", "10.8.0.2", "destination"),
            ("domain", "login-verify.account-secure.top", "destination"),
        },
        ["T1071.004"],
        ["Command and Control"],
    ),
    Case(
        "suricata/smtp_no_flow_id.json",
        # No flow_id: the id is a hash of the canonical record.
        "suricata:8673b8c4f2aa164d63debcc01053428e",
        Severity.INFORMATIONAL,  # local rule priority 4
        utc(2025, 5, 8, 8, 0, 0, 1),
        "LOCAL SMTP attachment with double extension",
        {
            ("ip", "203.0.113.9", "source"),
            ("ip", "10.1.1.25", "destination"),
            ("email", "billing@invoices-example.org", "sender"),
            ("email", "ap@example.com", "recipient"),
        },
        labels={"action": "blocked"},
    ),
    # --- AWS GuardDuty --------------------------------------------------------------------
    Case(
        "guardduty/ec2_ssh_bruteforce_pascal.json",
        "guardduty:3ec6d2a1f4b5c6d7e8f9a0b1c2d3e4f5",
        Severity.LOW,
        utc(2025, 3, 2, 7, 15, 41, 902000),
        "198.51.100.23 is performing SSH brute force attacks against i-0f1e2d3c4b5a69788.",
        {
            ("cloud_resource", "i-0f1e2d3c4b5a69788", "target"),
            ("ip", "172.31.20.14", "destination"),
            ("ip", "34.250.10.20", "destination"),
            ("host", "ip-172-31-20-14.eu-west-1.compute.internal", "target"),
            ("ip", "198.51.100.23", "source"),
        },
        ["T1110"],  # our table (guardduty_attack), not AWS's
        risk_score=20,
        rule_id="UnauthorizedAccess:EC2/SSHBruteForce",
        vendor="AWS",
        product="GuardDuty",
        labels={"account_id": "111122223333", "region": "eu-west-1", "count": "14"},
    ),
    Case(
        "guardduty/eventbridge_iam_anomalous_api.json",
        "guardduty:b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1",
        Severity.MEDIUM,
        utc(2025, 4, 9, 12, 29, 41, 117000),
        "The API GetSecretValue was invoked using access key ASIAEXAMPLE7XQ3ZJ4KD under unusual"
        " circumstances.",
        {
            ("user", "ci-deployer", "actor"),
            ("cloud_resource", "ASIAEXAMPLE7XQ3ZJ4KD", "target"),
            ("ip", "192.0.2.61", "source"),
        },
        tactics=["Credential Access"],  # CredentialAccess:IAMUser/AnomalousBehavior: no technique
        risk_score=50,
        labels={"api": "GetSecretValue", "caller_type": "Remote IP"},
    ),
    Case(
        "guardduty/getfindings_two.json",
        "guardduty:7a7b7c7d7e7f70717273747576777879",
        Severity.HIGH,
        utc(2025, 3, 5, 19, 44, 2, 310000),
        "Command and Control server domain name queried by EC2 instance i-0c0ffee1234567890.",
        {
            ("cloud_resource", "i-0c0ffee1234567890", "actor"),
            ("ip", "172.31.44.9", "actor"),
            ("host", "ip-172-31-44-9.eu-west-1.compute.internal", "actor"),
            ("domain", "update.badc2-example.com", "destination"),
        },
        ["T1071"],
        risk_score=80,
        rule_id="Backdoor:EC2/C&CActivity.B!DNS",
    ),
    Case(
        "guardduty/getfindings_two.json",
        "guardduty:9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a",
        Severity.CRITICAL,  # AWS band: 9.0 and above
        utc(2025, 3, 6, 2, 10),
        "Potential data compromise of S3 bucket acme-finance-exports.",
        {
            ("user", "reporting-bot", "actor"),
            ("cloud_resource", "AKIAEXAMPLEOLDKEY001", "target"),
            ("cloud_resource", "arn:aws:s3:::acme-finance-exports", "target"),
            ("ip", "203.0.113.200", "source"),
        },
        risk_score=92,
        index=1,
    ),
    Case(
        "guardduty/ec2_bitcoin_outbound_camel.json",
        "guardduty:e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9",
        Severity.HIGH,
        utc(2025, 6, 1, 0, 5, 12, 500000),
        "EC2 instance i-0123456789abcdef0 is communicating with Bitcoin-related IP address "
        "198.18.7.77.",
        {
            ("cloud_resource", "i-0123456789abcdef0", "actor"),
            ("ip", "10.50.3.7", "source"),
            ("ip", "198.18.7.77", "destination"),
        },
        ["T1496"],
        risk_score=80,
        labels={"connection_direction": "OUTBOUND", "remote_port": "3333"},
    ),
    # --- Microsoft Graph security alerts ----------------------------------------------------
    Case(
        "ms_graph/mde_ransomware.json",
        "ms_graph:da638752010455512345_-1184422871",
        Severity.HIGH,
        utc(2025, 2, 20, 3, 17, 25, 441287),
        "Ransomware behavior detected in the file system",
        {
            ("host", "fin-lt-0342.corp.example.com", "target"),
            ("user", "m.rossi", None),
            ("user", "m.rossi@example.com", "actor"),
            ("process", "vssadmin.exe", None),
            ("file_hash", "c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2", None),
            ("file_hash", "b2c1e5a1f0d3e4c5b6a79881726354a1b2c3d4e5", None),
            ("file_hash", "aa11bb22cc33dd44ee55ff66aa77bb88cc99dd00ee11ff22aa33bb44cc55dd66", None),
            ("file_hash", "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b", None),
        },
        ["T1486", "T1490"],
        ["Impact"],
        rule_id="7f1c9b2e-0c4e-4b8f-9d1a-6e5f4a3b2c1d",
        vendor="Microsoft",
        product="microsoftDefenderForEndpoint",
        labels={"incidentId": "41877", "detectionSource": "antivirus"},
    ),
    Case(
        "ms_graph/mdo_phish.json",
        "ms_graph:fa0d1c2b3a49586776a1b2c3d4e5f6a7b8c9d0e1f2",
        Severity.MEDIUM,
        utc(2025, 3, 14, 8, 2, 51, 903000),
        "Email messages containing malicious URL removed after delivery",
        {
            ("ip", "198.51.100.144", "source"),
            ("email", "noreply@example-invoices.net", "sender"),
            ("email", "billing@example-invoices.net", "sender"),
            ("email", "ap-team@example.com", "recipient"),
            ("email", "ap-team@example.com", "target"),  # the mailbox evidence, role "attacked"
            ("user", "ap-team@example.com", "target"),
            ("url", "https://example-invoices.net/view?id=88213", None),
        },
        ["T1566.002"],
        ["Initial Access"],
    ),
    Case(
        "ms_graph/sentinel_unknown_severity.json",
        "ms_graph:sentinel-5b2d9c0e-8f1a-4c3b-9e7d-6a5b4c3d2e1f",
        Severity.MEDIUM,  # "unknown" never hides an alert
        utc(2025, 4, 1, 22, 58),
        "Sign-in from TOR exit node followed by MFA registration",
        # "not-an-ip" evidence is dropped, not fatal
        {("ip", "185.220.100.252", "attacker"), ("user", "k.tanaka@example.com", "target")},
        product="microsoftSentinel",
        labels={"severity_raw": "unknown", "ingest.entities_dropped": "1"},
    ),
    Case(
        "ms_graph/mdi_recon_informational.json",
        "ms_graph:aad1e2f3a4b5c6d7e8f9_1122334455",
        Severity.INFORMATIONAL,
        utc(2025, 5, 22, 11, 45, 3, 123456),
        "Account enumeration reconnaissance (LDAP)",
        {
            ("host", "ws-eng-19.corp.example.com", "attacker"),
            ("host", "dc02.corp.example.com", "destination"),
            ("user", "p.kowalski", "source"),
        },
        ["T1087.002", "T1069"],
        ["Discovery"],
    ),
    # --- CrowdStrike Falcon ----------------------------------------------------------------
    Case(
        "crowdstrike/legacy_credential_dumping.json",
        "crowdstrike:ldt:5f4e3d2c1b0a99887766554433221100:281474977531904",
        Severity.CRITICAL,
        utc(2025, 2, 18, 9, 44, 47),  # ProcessStartTime, epoch seconds
        "Credential Theft: OS Credential Dumping",
        {
            ("host", "hr-ws-0117", None),
            ("ip", "10.60.1.117", None),
            ("user", "l.moreau", "actor"),
            ("file_hash", "05732e84de58a3cc142535431b3aa04efbe034cc96e837f93c360a6387d8faad", None),
            ("file_hash", "7e5cf4b5d3b2d0f2c0d1e2f3a4b5c6d7e8f9a0b1", None),
            ("file_hash", "a92669ec8852230a10256ac23bbf4489", None),
            ("process", "procdump64.exe", None),
            ("process", "cmd.exe", "parent"),
        },
        ["T1003.001"],  # from TechniqueId; "OS Credential Dumping" is a name, not an id
        ["Credential Access"],
        rule_id="10126",
        vendor="CrowdStrike",
        product="Falcon",
        labels={"technique": "OS Credential Dumping", "event_type": "DetectionSummaryEvent"},
    ),
    Case(
        "crowdstrike/epp_masquerading.json",
        "crowdstrike:0a1b2c3d4e5f60718293a4b5c6d7e8f9:ind:77aa66bb55cc44dd33ee22ff11009988:"
        "94485123405-10287-3010050",
        Severity.HIGH,
        utc(2025, 3, 17, 12, 0, 0, 512000),  # metadata.eventCreationTime, ms
        "Masquerading",
        {
            ("host", "eng-mbp-22", None),
            ("ip", "192.168.7.22", None),
            ("user", "d.okafor", "actor"),
            ("file_hash", "9f2b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b", None),
            ("process", "svchost.exe", None),
            ("process", "explorer.exe", "parent"),
            ("domain", "sync.telemetry-example.net", None),
        },
        ["T1036", "T1036.005"],
        ["Defense Evasion"],
        risk_score=70,
        rule_id="10287",
    ),
    Case(
        "crowdstrike/epp_ml_minimal.json",
        "crowdstrike:0a1b2c3d4e5f60718293a4b5c6d7e8f9:ods:00aa11bb22cc33dd44ee55ff66778899:4411",
        Severity.MEDIUM,  # no SeverityName: from the 0-100 score
        utc(2025, 3, 17, 13),
        "OnDemandScan: Sensor-based ML",
        {
            ("host", "kiosk-lobby-1", None),
            ("ip", "172.20.0.31", None),
            ("file_hash", "3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a", None),
            ("process", "update_helper.scr", None),
        },
        [],
        [],  # "Machine Learning" is a Falcon category, not an ATT&CK tactic
        risk_score=50,
        labels={"tactic": "Machine Learning", "technique": "Sensor-based ML"},
    ),
    Case(
        "crowdstrike/legacy_network_inbound.json",
        "crowdstrike:ldt:99887766554433221100ffeeddccbbaa:281474977600001",
        Severity.MEDIUM,
        utc(2025, 2, 18, 17, 33, 10),
        "Suspicious Activity: Server Software Component",
        {
            ("host", "web-iis-03", None),
            ("ip", "172.16.30.3", None),
            ("user", "defaultapppool", "actor"),
            ("file_hash", "b99d114b267ffd068c3289199b6df95a9f9e64872d6c2a666d2a6f3de8dbf4c6", None),
            ("process", "cmd.exe", None),
            ("process", "w3wp.exe", "parent"),
            ("ip", "45.142.212.61", "source"),
            ("ip", "172.16.30.3", "destination"),
        },
        ["T1505"],
        ["Persistence"],
    ),
    Case(
        "crowdstrike/epp_user_execution_ids.json",
        "crowdstrike:0a1b2c3d4e5f60718293a4b5c6d7e8f9:ind:3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b:"
        "39117804111-10305-884410",
        Severity.HIGH,
        utc(2025, 3, 19, 10, 2, 1, 337000),
        "Malicious Document: User Execution",
        {
            ("host", "acc-ws-0408", None),
            ("ip", "10.44.8.108", None),
            ("user", "r.alvarez", "actor"),
            ("file_hash", "4d2c0f7e9b8a1c3d5e7f90a2b4c6d8e0f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1", None),
            ("file_hash", "1f0e2d3c4b5a69788796a5b4c3d2e1f0", None),
            ("process", "Remittance_0319.pdf.exe", None),
            ("process", "explorer.exe", "parent"),
        },
        ["T1204"],  # TechniqueId
        ["Execution"],  # TacticId TA0002
        risk_score=80,
        rule_id="10305",
        labels={"technique": "User Execution", "tactic": "Execution"},
    ),
    # --- Splunk ES notables ------------------------------------------------------------------
    Case(
        "splunk/webhook_excessive_failed_logins.json",
        "splunk:0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9@@notable@@5f2b4e1c9d8a7b6c5d4e3f2a1b0c9d8e",
        Severity.HIGH,  # urgency wins over severity
        utc(2025, 3, 7, 12, 15, 12),
        "Excessive Failed Logins from 203.0.113.77 to vpn-gw-01",
        {
            ("ip", "203.0.113.77", "source"),
            ("host", "vpn-gw-01", "destination"),
            ("user", "admin", None),
            ("user", "administrator", None),
            ("user", "root", None),
        },
        ["T1110", "T1110.001"],
        ["Credential Access"],
        rule_id="Access - Excessive Failed Logins - Rule",
        vendor="Splunk",
        product="Enterprise Security",
        labels={"security_domain": "access", "app": "SplunkEnterpriseSecuritySuite"},
    ),
    Case(
        "splunk/notable_malware_annotations_json.json",
        "splunk:9E8D7C6B-5A49-3827-1605-F4E3D2C1B0A9@@notable@@c0ffee1234567890abcdef1234567890",
        Severity.CRITICAL,
        utc(2025, 3, 9, 16, 20, 44),
        "Malware Trojan:Win32/Emotet.RPX!MTB on PAY-SRV-02",
        {
            ("host", "pay-srv-02", "destination"),
            ("user", "svc_pay", None),
            ("file_hash", "e3b98cbd9a3f1c2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5", None),
        },
        ["T1204.002", "T1566.001"],
    ),
    Case(
        "splunk/export_web_no_event_id.json",
        "splunk:bba5d2ef916b123cef370c7fc840db88",  # no event_id: hash of the record
        Severity.LOW,
        datetime(2025, 3, 10, 1, 5, tzinfo=timezone(timedelta(hours=-5))),
        "Abnormally High Number of HTTP Method Events By Src",
        {
            ("ip", "198.51.100.12", "source"),
            ("host", "www.example.com", "destination"),
            ("host", "api.example.com", "destination"),
            ("url", "https://api.example.com/v1/login", None),
        },
    ),
    Case(
        "splunk/notable_lateral_nt_hosts.json",
        "splunk:3C2B1A09-8F7E-4D6C-B5A4-93827160F5E4@@notable@@7e6d5c4b3a2918f7e6d5c4b3a2918f70",
        Severity.HIGH,
        utc(2025, 5, 14, 10, 2, 3),
        "Service created remotely on FS-CORP-02 from WS-FIN-021",
        {
            ("ip", "10.30.4.21", "source"),
            ("ip", "10.30.1.12", "destination"),
            ("host", "ws-fin-021", "source"),  # src_nt_host
            ("host", "fs-corp-02", "destination"),  # dest_nt_host
            ("host", "fs-corp-02.corp.example.com", None),  # orig_host
            ("user", "svc_patch", None),
        },
        ["T1021.002", "T1569.002"],
        ["Lateral Movement", "Execution"],
        rule_id="Endpoint - Remote Service Creation Via SMB - Rule",
    ),
    Case(
        "splunk/notable_informational_risk.json",
        "splunk:11111111-2222-3333-4444-555555555555@@notable@@abcdefabcdefabcdefabcdefabcdef12",
        Severity.INFORMATIONAL,
        utc(2025, 3, 11, 10, 46, 40),
        "Risk threshold exceeded for b.lee",
        {("ip", "10.9.8.7", "source"), ("user", "b.lee", "source")},
        ["T1078"],
        ["Initial Access"],
        risk_score=20,
    ),
]


def _alerts(file: str) -> list[Alert]:
    result = parse_payload(fixture_bytes(file), source=file, received_at=RECEIVED)
    assert result.dead_letters == [], [d.reason for d in result.dead_letters]
    return result.alerts


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.file}[{c.index}]")
def test_fixture_normalises_to_expected_alert(case: Case) -> None:
    alert = _alerts(case.file)[case.index]
    fmt = case.file.split("/")[0]
    assert alert.format == fmt
    assert alert.id == case.id
    assert alert.severity is case.severity
    assert alert.created_at == case.created_at
    assert alert.created_at.tzinfo is UTC  # every source's time is stored in UTC
    assert alert.title == case.title
    assert {(e.type.value, e.value, e.role) for e in alert.entities} == case.entities
    assert alert.techniques == case.techniques
    assert alert.tactics == case.tactics
    assert alert.risk_score == case.risk_score
    assert alert.received_at == RECEIVED
    if case.rule_id is not None:
        assert alert.rule.id == case.rule_id
    if case.vendor is not None:
        assert alert.vendor == case.vendor
    if case.product is not None:
        assert alert.product == case.product
    for key, value in case.labels.items():
        assert alert.labels.get(key) == value, key


def test_every_vendor_fixture_is_covered_by_the_table() -> None:
    covered = {c.file for c in CASES}
    assert covered == set(vendor_fixture_files())
    # soc_risk is soc-agent's own format (risk alerts), tested in test_soc_risk.py.
    tabled = set(FORMATS) - {"soc_risk", *OWN_TABLE_FORMATS}
    assert {f.split("/")[0] for f in covered} == tabled == set(VENDOR_FORMATS)
    for fmt in OWN_TABLE_FORMATS:
        assert (ALERTS.parent.parent / "unit" / "ingest" / f"test_{fmt}.py").is_file()


@pytest.mark.parametrize("file", ALL_FIXTURES)
def test_detects_every_fixture_without_a_hint(file: str) -> None:
    assert detect_format(fixture_doc(file)) == file.split("/")[0]


@pytest.mark.parametrize("file", ALL_FIXTURES)
def test_original_is_the_untouched_record_and_ids_are_stable(file: str) -> None:
    doc = fixture_doc(file)
    pristine = copy.deepcopy(doc)
    first = parse_payload(fixture_bytes(file), source="a", received_at=RECEIVED).alerts
    again = parse_payload(fixture_bytes(file), source="b").alerts
    assert [a.id for a in first] == [a.id for a in again]
    assert doc == pristine
    if len(first) == 1:
        assert first[0].original == doc
        assert normalize(doc).original == pristine  # normalize() does not mutate its input
        assert doc == pristine


@pytest.mark.parametrize("file", ALL_FIXTURES)
def test_hint_matches_detection(file: str) -> None:
    fmt = file.split("/")[0]
    hinted = parse_payload(fixture_bytes(file), source=file, format_hint=fmt, received_at=RECEIVED)
    detected = parse_payload(fixture_bytes(file), source=file, received_at=RECEIVED)
    assert hinted.alerts == detected.alerts


def test_suricata_id_is_built_from_flow_signature_tx_and_time() -> None:
    doc = fixture_doc("suricata/et_malware_http_c2.json")
    base = normalize(doc).id
    same_flow_other_tx = {**doc, "tx_id": 2}
    assert normalize(same_flow_other_tx).id != base
    reordered = json.loads(json.dumps(doc, sort_keys=True))
    assert normalize(reordered).id == base


def test_elastic_flattened_and_nested_forms_agree() -> None:
    nested = fixture_doc("elastic/ssh_brute_force_nested.json")
    flat = {k: v for k, v in nested.items() if k != "kibana"}
    for key, value in nested["kibana"]["alert"].items():
        if key == "rule":
            for rkey, rvalue in value.items():
                flat[f"kibana.alert.rule.{rkey}"] = rvalue
        else:
            flat[f"kibana.alert.{key}"] = value
    flat["source.ip"] = flat.pop("source")["ip"]
    a, b = normalize(nested), normalize(flat)
    assert (a.id, a.title, a.severity, a.techniques, a.tactics) == (
        b.id,
        b.title,
        b.severity,
        b.techniques,
        b.tactics,
    )
    assert {e.key for e in a.entities} == {e.key for e in b.entities}


@pytest.mark.parametrize(
    ("file", "reason"),
    [
        ("rejected/suricata_dns_event.json", "suricata: unsupported Suricata event_type 'dns'"),
        ("rejected/ocsf_authentication_3002.json", "ocsf: unsupported OCSF class_uid 3002"),
        (
            "rejected/crowdstrike_auth_audit.json",
            "crowdstrike: unsupported CrowdStrike eventType 'AuthActivityAuditEvent'",
        ),
        ("rejected/guardduty_empty_findings.json", "guardduty: empty findings envelope"),
        (
            "rejected/guardduty_eventbridge_empty_detail.json",
            "guardduty: EventBridge envelope has no finding",
        ),
        (
            "rejected/crowdstrike_severity_word.json",
            "crowdstrike: field 'event.Severity' must be a number, got 'high'",
        ),
        (
            "rejected/ms_graph_no_created_time.json",
            "ms_graph: missing required field 'createdDateTime'",
        ),
        (
            "rejected/unknown_vendor.json",
            "unrecognised format: no normalizer matches (top-level keys: alarm, node, when)",
        ),
    ],
)
def test_rejected_records_become_dead_letters_with_clear_reasons(file: str, reason: str) -> None:
    data = fixture_bytes(file)
    result = parse_payload(data, source=file, received_at=RECEIVED, headers={"topic": "soc.alerts"})
    assert result.alerts == []
    [dead] = result.dead_letters
    assert dead.reason.startswith(reason), dead.reason
    assert dead.original == data
    assert dead.source == file
    assert dead.headers == {"topic": "soc.alerts"}
    assert dead.received_at == RECEIVED


def test_mappings_may_not_take_a_built_in_format_name() -> None:
    from soc_agent.ingest.mapping import _BUILTIN

    assert set(_BUILTIN) == set(FORMATS)


@pytest.mark.parametrize(
    ("metadata", "techniques", "tactics"),
    [
        (  # ET Open's own keys
            {"mitre_tactic_id": ["TA0011"], "mitre_technique_id": ["T1071"]},
            ["T1071"],
            ["Command and Control"],
        ),
        (  # lower-case ids and an underscore sub-technique
            {"mitre_technique_id": ["t1071_001"], "mitre_tactic_name": ["command_and_control"]},
            ["T1071.001"],
            ["Command and Control"],
        ),
        (  # one mixed list under mitre_attack
            {"mitre_attack": ["TA0001", "t1190", "Initial_Access"]},
            ["T1190"],
            ["Initial Access"],
        ),
        (  # a technique written where the tactic goes, names that are not ids
            {"mitre_tactic_id": ["T1566.002"], "mitre_technique_name": ["Spearphishing_Link"]},
            ["T1566.002"],
            [],
        ),
    ],
)
def test_suricata_reads_every_mitre_metadata_variant(
    metadata: dict[str, list[str]], techniques: list[str], tactics: list[str]
) -> None:
    doc = fixture_doc("suricata/et_malware_http_c2.json")
    doc["alert"]["metadata"] = metadata
    alert = normalize(doc)
    assert (alert.techniques, alert.tactics) == (techniques, tactics)


def test_graph_keeps_the_sender_ip_of_evidence_other_than_the_message() -> None:
    doc = fixture_doc("ms_graph/mdo_phish.json")
    doc["evidence"].append(
        {
            "@odata.type": "#microsoft.graph.security.mailClusterEvidence",
            "roles": [],
            "senderIp": "198.51.100.23",
        }
    )
    alert = normalize(doc)
    assert ("ip", "198.51.100.23", "source") in {
        (e.type.value, e.value, e.role) for e in alert.entities
    }


@pytest.mark.parametrize(
    ("direction", "local_role", "remote_role"),
    [("INBOUND", "destination", "source"), ("OUTBOUND", "source", "destination")],
)
def test_guardduty_places_the_instance_by_the_connection_direction(
    direction: str, local_role: str, remote_role: str
) -> None:
    doc = fixture_doc("guardduty/ec2_bitcoin_outbound_camel.json")
    network = doc["service"]["action"]["networkConnectionAction"]
    network["connectionDirection"] = direction
    alert = normalize(doc)
    roles = {e.value: e.role for e in alert.entities if e.type.value == "ip"}
    assert roles["10.50.3.7"] == local_role  # the instance's own address, from its NIC
    assert roles[network["remoteIpDetails"]["ipAddressV4"]] == remote_role
