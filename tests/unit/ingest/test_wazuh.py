"""Wazuh alerts read natively: alerts.json lines, indexer documents and search hits."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
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
    load_mappings,
    ms_graph,
    ocsf,
    soc_risk,
    splunk,
    suricata,
    wazuh,
)
from soc_agent.models import Alert, Severity
from soc_agent.models.alert import ENTITIES_TRUNCATED, ENTITIES_TRUNCATED_TYPES

ROOT = Path(__file__).resolve().parents[3]
ALERTS = ROOT / "tests" / "fixtures" / "alerts"
OWN = ALERTS / "wazuh"
MAPPING_FIXTURES = ROOT / "tests" / "fixtures" / "wazuh"
RECEIVED = datetime(2026, 1, 18, 12, 0, tzinfo=UTC)
OTHER_FORMATS = (crowdstrike, elastic, guardduty, ms_graph, ocsf, soc_risk, splunk, suricata)

# (type, value, role, aliases)
Ent = tuple[str, str, str | None, tuple[tuple[str, str], ...]]


def load(name: str) -> dict[str, Any]:
    doc = json.loads((OWN / name).read_text())
    assert isinstance(doc, dict)
    return doc


def run(doc: dict[str, Any], **kwargs: Any) -> Alert:
    return wazuh.normalize(doc, received_at=RECEIVED, **kwargs)


def entities(alert: Alert) -> set[Ent]:
    return {
        (e.type.value, e.value, e.role, tuple(sorted(e.aliases.items()))) for e in alert.entities
    }


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


@dataclass(frozen=True)
class Case:
    file: str
    id: str
    severity: Severity
    created_at: datetime
    title: str
    rule_id: str
    entities: set[Ent]
    techniques: list[str] = field(default_factory=list)
    tactics: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    absent_labels: tuple[str, ...] = ()


CASES = [
    Case(
        "sshd_invalid_user_bruteforce.json",
        "wazuh:wazuh-mgr-01:1768471923.48211903",
        Severity.HIGH,  # level 10
        utc(2026, 1, 15, 10, 12, 3, 123000),  # "+0000": an offset without a colon
        "sshd: brute force trying to get access to the system. Non existent user.",
        "5712",
        {
            ("host", "lb-edge-03", "target", (("wazuh_agent_id", "wazuh-mgr-01/014"),)),
            ("ip", "10.20.1.7", "target", ()),
            ("ip", "198.51.100.23", "source", ()),
            ("user", "oracle", "actor", (("sam", "oracle"),)),  # data.srcuser
        },
        ["T1110"],
        ["Credential Access"],
        {
            "level": "10",
            "groups": "syslog,sshd,authentication_failures",
            "pci_dss": "11.4,10.2.4,10.2.5",
            "frequency": "8",
            "firedtimes": "3",
            "manager": "wazuh-mgr-01",
            "cluster_node": "worker-02",
            "agent_id": "014",
            "decoder": "sshd",
            "location": "/var/log/secure",
            "wazuh_id": "1768471923.48211903",
            "mitre_techniques": "Brute Force",
        },
        ("severity_raw", "index"),
    ),
    Case(
        "windows_logon_failure_search_hit.json",
        "wazuh:wazuh-mgr-01:1768484431.51877342",
        Severity.LOW,  # level 5
        utc(2026, 1, 15, 13, 40, 31, 907000),  # "+0100" manager time, stored in UTC
        "Logon failure - Unknown user or bad password.",
        "60122",
        {
            (
                "host",
                "fin-ws-0117",
                "target",
                (("fqdn", "fin-ws-0117.corp.example.com"), ("wazuh_agent_id", "wazuh-mgr-01/027")),
            ),
            ("ip", "10.30.4.117", "target", ()),
            ("ip", "203.0.113.77", "source", ()),  # win.eventdata.ipAddress
            ("host", "kali-7f", "source", ()),  # win.eventdata.workstationName
            # subject "-" / S-1-0-0 is nobody; the target's NULL SID is no alias
            ("user", "m.okafor", "target", (("nt_account", "corp\\m.okafor"), ("sam", "m.okafor"))),
        },
        ["T1078", "T1531"],
        ["Defense Evasion", "Persistence", "Privilege Escalation", "Initial Access", "Impact"],
        {
            "index": "wazuh-alerts-4.x-2026.01.15",
            "win_event_id": "4625",
            "win_channel": "Security",
            "logon_type": "3",
            "win_sub_status": "0xc000006a",
            "geo_country": "Netherlands",
            "geo_city": "Amsterdam",
            "level": "5",
        },
    ),
    Case(
        "fim_whodata_modified.json",
        "wazuh:wazuh-mgr-01:1768550624.1093321",
        Severity.MEDIUM,  # level 7
        utc(2026, 1, 16, 8, 3, 44, 561000),
        "Integrity checksum changed.",
        "550",
        {
            ("host", "app-db-02", "target", (("wazuh_agent_id", "wazuh-mgr-01/009"),)),
            ("ip", "10.20.8.42", "target", ()),
            (
                "file_hash",
                "c458e7084ecdbeb1361a46864032180ced1479629c3f7abdf8292a940867e61d",
                "target",
                (),
            ),
            ("file_hash", "1d2525a3de8dc2c1acea06b4ad2d6eb1170405c1", "target", ()),
            ("file_hash", "a87bfe43654ac56c328aa45c1f85505b", "target", ()),
            # who-data: the login user, not the root that sudo made of them
            ("user", "a.kowalski", "actor", (("sam", "a.kowalski"),)),
            ("process", "vim.basic", "actor", ()),
        },
        ["T1565.001"],
        ["Impact"],
        {
            "file": "/etc/pam.d/sshd",
            "syscheck_event": "modified",
            "syscheck_mode": "whodata",
            "changed_attributes": "size,mtime,md5,sha1,sha256",
            "gpg13": "4.11",
        },
    ),
    Case(
        "aws_cloudtrail_console_login_manager.json",
        "wazuh:wazuh-mgr-01:1768584309.77120455",
        Severity.HIGH,
        utc(2026, 1, 16, 17, 25, 9, 4000),
        "AWS Cloudtrail: signin.amazonaws.com - ConsoleLogin - Possible breaking attempt "
        "(high number of login attempts).",
        "80255",
        {
            # agent 000 ran the AWS module: the manager is not a host of this alert
            ("ip", "192.0.2.150", "source", ()),
            ("user", "j.alvarez", "actor", (("sam", "j.alvarez"),)),
        },
        ["T1110"],
        ["Credential Access"],
        {
            "agent_id": "000",
            "aws_source": "cloudtrail",
            "aws_event_name": "ConsoleLogin",
            "aws_event_source": "signin.amazonaws.com",
            "aws_region": "us-east-1",
            "aws_account_id": "111122223333",
            "integration": "aws",
            "location": "Wazuh-AWS",
        },
    ),
    Case(
        "syslog_relayed_by_manager.json",
        "wazuh:wazuh-mgr-01:1768616095.2290117",
        Severity.LOW,  # level 3
        utc(2026, 1, 17, 2, 14, 55, 310000),
        "sshd: authentication success.",
        "5715",
        {
            # the machine in the syslog header, and the sender's address in `location`
            ("host", "nas-backup-01", "target", ()),
            ("ip", "192.168.50.12", "target", ()),
            ("ip", "10.40.2.200", "source", ()),
            ("user", "root", "target", (("sam", "root"),)),
        },
        ["T1078", "T1021"],
        [
            "Defense Evasion",
            "Persistence",
            "Privilege Escalation",
            "Initial Access",
            "Lateral Movement",
        ],
        {"agent_id": "000", "program_name": "sshd", "srcport": "50022"},
    ),
    Case(
        "sysmon_encoded_powershell_document.json",
        "wazuh:wazuh-mgr-02:1768643300.90442187",
        Severity.CRITICAL,  # level "13", a string
        utc(2026, 1, 17, 9, 48, 20, 772000),
        "Office application started PowerShell with an encoded command",
        "100412",
        {
            (
                "host",
                "hr-lt-0042",
                "target",
                (("fqdn", "hr-lt-0042.corp.example.com"), ("wazuh_agent_id", "wazuh-mgr-02/031")),
            ),
            ("ip", "10.30.9.42", "target", ()),
            ("user", "l.chen", "actor", (("nt_account", "corp\\l.chen"), ("sam", "l.chen"))),
            ("process", "powershell.exe", "actor", ()),
            ("process", "WINWORD.EXE", "parent", ()),
            ("file_hash", "5eb0ed24d6427142a416d79821cbc52d5985e840", "actor", ()),
            ("file_hash", "4c3ba423eac196d80bae3a285ced1d47", "actor", ()),
            (
                "file_hash",
                "f77f5bb997d09f62395045d3cd059605cda433fb7014e3cec80f30eaadc69043",
                "actor",
                (),
            ),
        },
        ["T1059.001", "T1204.002", "T1027"],
        ["Execution", "Defense Evasion"],
        {"level": "13", "win_event_id": "1", "cluster": "wazuh-prod", "manager": "wazuh-mgr-02"},
    ),
]


def test_every_fixture_is_in_the_table() -> None:
    assert {c.file for c in CASES} == {p.name for p in OWN.glob("*.json")}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.file)
def test_fixture_normalises_to_expected_alert(case: Case) -> None:
    alert = run(load(case.file))
    assert (alert.format, alert.vendor, alert.product) == ("wazuh", "Wazuh", "Wazuh")
    assert alert.id == case.id
    assert alert.source_id == case.id.removeprefix("wazuh:")
    assert alert.severity is case.severity
    assert alert.created_at == case.created_at
    assert alert.created_at.tzinfo is UTC
    assert alert.received_at == RECEIVED
    assert alert.title == case.title
    assert (alert.rule.id, alert.rule.name) == (case.rule_id, case.title)
    assert entities(alert) == case.entities
    assert alert.techniques == case.techniques
    assert alert.tactics == case.tactics
    assert alert.risk_score is None
    for key, value in case.labels.items():
        assert alert.labels.get(key) == value, key
    for key in case.absent_labels:
        assert key not in alert.labels, key


def test_entity_attributes_carry_the_context() -> None:
    fim = run(load("fim_whodata_modified.json"))
    sha256 = next(e for e in fim.entities if e.attributes.get("algorithm") == "sha256")
    assert sha256.attributes == {
        "algorithm": "sha256",
        "path": "/etc/pam.d/sshd",
        "event": "modified",
        "owner": "root",
    }
    vim = next(e for e in fim.entities if e.type.value == "process")
    assert vim.attributes == {"path": "/usr/bin/vim.basic", "pid": "48213"}
    user = next(e for e in fim.entities if e.type.value == "user")
    assert user.attributes == {"uid": "1001"}

    sysmon = run(load("sysmon_encoded_powershell_document.json"))
    ps = next(e for e in sysmon.entities if e.value == "powershell.exe")
    assert ps.attributes["pid"] == "7812"
    assert ps.attributes["command_line"].startswith("powershell.exe -NoP -W Hidden -enc ")
    assert ps.attributes["path"].endswith("\\WindowsPowerShell\\v1.0\\powershell.exe")
    algorithms = {e.attributes["algorithm"] for e in sysmon.entities if e.type.value == "file_hash"}
    assert algorithms == {"sha1", "md5", "sha256"}  # IMPHASH is not a file hash

    aws = run(load("aws_cloudtrail_console_login_manager.json"))
    (user,) = (e for e in aws.entities if e.type.value == "user")
    assert user.attributes == {
        "arn": "arn:aws:iam::111122223333:user/j.alvarez",
        "aws_account": "111122223333",
        "identity_type": "IAMUser",
    }


def test_description_is_the_log_line_or_the_windows_message() -> None:
    sshd = run(load("sshd_invalid_user_bruteforce.json"))
    assert sshd.description is not None
    assert sshd.description.endswith("invalid user oracle from 198.51.100.23 port 40214 ssh2")
    windows = run(load("windows_logon_failure_search_hit.json"))
    assert windows.description is not None
    assert windows.description.startswith('"An account failed to log on.')
    assert run(load("aws_cloudtrail_console_login_manager.json")).description is None


# --- detection ------------------------------------------------------------------------------


def _docs(path: Path) -> Iterator[Any]:
    text = path.read_text()
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        parsed = [json.loads(line) for line in text.splitlines() if line.strip()]
    yield from parsed if isinstance(parsed, list) else [parsed]


def other_fixtures() -> list[Path]:
    return sorted(p for p in ALERTS.glob("*/*.json") if p.parent.name != "wazuh")


@pytest.mark.parametrize("path", sorted(OWN.glob("*.json")), ids=lambda p: p.name)
def test_matches_its_own_fixtures_and_no_other_format_does(path: Path) -> None:
    doc = json.loads(path.read_text())
    assert wazuh.matches(doc)
    for module in OTHER_FORMATS:
        assert not module.matches(doc), module.FORMAT


@pytest.mark.parametrize("path", other_fixtures(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_does_not_match_other_formats_fixtures(path: Path) -> None:
    for doc in _docs(path):
        if isinstance(doc, dict):
            assert not wazuh.matches(doc)


@pytest.mark.parametrize("path", sorted(MAPPING_FIXTURES.glob("*.json")), ids=lambda p: p.name)
def test_matches_the_records_the_shipped_mapping_was_written_for(path: Path) -> None:
    # These are Wazuh alerts too: natively detected, they no longer reach the mapping.
    assert wazuh.matches(json.loads(path.read_text()))


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"_source": "text"},
        {"rule": {"level": 5, "id": "1"}, "agent": {"id": "001"}},  # no manager
        {"rule": {"level": 5, "id": "1"}, "manager": {"name": "m"}, "agent": "001"},
        {"rule": {"id": "1"}, "agent": {"id": "001"}, "manager": {"name": "m"}},  # no level
        {"rule": "5712", "agent": {"id": "001"}, "manager": {"name": "m"}},
        # ECS-looking record (rule and agent, but Elastic's shape)
        {"rule": {"id": "x", "name": "y"}, "agent": {"id": "a", "type": "filebeat"}},
    ],
)
def test_near_misses_are_not_wazuh(doc: dict[str, Any]) -> None:
    assert not wazuh.matches(doc)


# --- ids and times --------------------------------------------------------------------------


def _as_index_document(doc: dict[str, Any]) -> dict[str, Any]:
    source = copy.deepcopy(doc)
    source["@timestamp"] = "2026-01-15T10:12:03.123Z"
    source["GeoLocation"] = {"country_name": "Germany", "location": {"lat": 50.1, "lon": 8.6}}
    return {"_index": "wazuh-alerts-4.x-2026.01.15", "_id": "Zx81", "_source": source}


def test_the_same_alert_from_alerts_json_and_from_the_index_has_one_id() -> None:
    line = load("sshd_invalid_user_bruteforce.json")
    hit = _as_index_document(line)
    a, b, c = run(line), run(hit), run(hit["_source"])
    assert a.id == b.id == c.id
    assert a.created_at == b.created_at == c.created_at
    assert entities(a) == entities(b) == entities(c)
    assert b.labels["geo_country"] == "Germany" and "index" not in c.labels


def test_the_id_is_per_manager() -> None:
    doc = load("sshd_invalid_user_bruteforce.json")
    other_node = copy.deepcopy(doc)
    other_node["manager"]["name"] = "wazuh-mgr-02"
    assert run(doc).id != run(other_node).id
    del other_node["manager"]
    assert run(other_node).id == "wazuh:1768471923.48211903"


def test_normalize_keeps_the_original_untouched_and_is_repeatable() -> None:
    for path in OWN.glob("*.json"):
        doc = json.loads(path.read_text())
        pristine = copy.deepcopy(doc)
        first, again = run(doc), wazuh.normalize(doc)
        assert doc == pristine
        assert first.original == pristine
        assert first.id == again.id


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2026-01-15T10:12:03.123+0000", utc(2026, 1, 15, 10, 12, 3, 123000)),
        ("2026-01-15T15:42:03.123+0530", utc(2026, 1, 15, 10, 12, 3, 123000)),
        ("2026-01-15T05:12:03.123-0500", utc(2026, 1, 15, 10, 12, 3, 123000)),
        ("2026-01-15T10:12:03.123Z", utc(2026, 1, 15, 10, 12, 3, 123000)),
        ("2026-01-15T10:12:03", utc(2026, 1, 15, 10, 12, 3)),
        (1768471923123, utc(2026, 1, 15, 10, 12, 3, 123000)),  # the index allows epoch_millis
    ],
)
def test_timestamps(stamp: Any, expected: datetime) -> None:
    doc = load("sshd_invalid_user_bruteforce.json")
    doc["timestamp"] = stamp
    assert run(doc).created_at == expected


def test_at_timestamp_stands_in_when_timestamp_is_absent() -> None:
    doc = load("sysmon_encoded_powershell_document.json")
    del doc["timestamp"]
    doc["@timestamp"] = "2026-01-17T09:48:21.000Z"
    assert run(doc).created_at == utc(2026, 1, 17, 9, 48, 21)


# --- severity -------------------------------------------------------------------------------

LEVELS = {
    **dict.fromkeys(range(0, 3), Severity.INFORMATIONAL),
    **dict.fromkeys(range(3, 6), Severity.LOW),
    **dict.fromkeys(range(6, 10), Severity.MEDIUM),
    **dict.fromkeys(range(10, 13), Severity.HIGH),
    **dict.fromkeys(range(13, 17), Severity.CRITICAL),
}


@pytest.mark.parametrize(("level", "severity"), sorted(LEVELS.items()))
def test_level_table(level: int, severity: Severity) -> None:
    doc = load("sshd_invalid_user_bruteforce.json")
    doc["rule"]["level"] = level
    alert = run(doc)
    assert alert.severity is severity
    assert alert.labels["level"] == str(level) and "severity_raw" not in alert.labels
    doc["rule"]["level"] = str(level)  # some exports write the level as text
    assert run(doc).severity is severity


def test_the_table_agrees_with_the_shipped_mapping() -> None:
    import yaml

    mapping = yaml.safe_load((ROOT / "samples" / "mappings" / "wazuh.yaml").read_text())
    table = mapping["fields"]["severity"]["map"]
    assert {int(k): Severity(v) for k, v in table.items()} == {
        k: v for k, v in LEVELS.items() if k <= 15
    }


@pytest.mark.parametrize(("level", "raw"), [(-1, "-1"), (17, "17"), (7.5, "7.5"), (None, "")])
def test_an_odd_level_never_hides_the_alert(level: Any, raw: str) -> None:
    doc = load("sshd_invalid_user_bruteforce.json")
    if level is None:
        del doc["rule"]["level"]
    else:
        doc["rule"]["level"] = level
    alert = run(doc)
    assert alert.severity is Severity.MEDIUM
    assert alert.labels["severity_raw"] == (raw or "missing")
    assert "level" not in alert.labels


# --- hosts: agents, the manager, relayed logs -----------------------------------------------


def _hosts(alert: Alert) -> set[Ent]:
    return {e for e in entities(alert) if e[0] in ("host", "ip") and e[2] in ("target", None)}


def test_the_managers_own_log_makes_it_a_host_without_the_shared_000_alias() -> None:
    doc = load("syslog_relayed_by_manager.json")
    doc["predecoder"]["hostname"] = "wazuh-mgr-01"
    doc["location"] = "/var/log/secure"
    assert _hosts(run(doc)) == {("host", "wazuh-mgr-01", "target", ())}


def test_forwarded_windows_events_name_both_machines() -> None:
    doc = load("windows_logon_failure_search_hit.json")
    doc["_source"]["agent"] = {"id": "044", "name": "wec-01", "ip": "10.30.0.5"}
    assert _hosts(run(doc)) == {
        ("host", "wec-01", "target", (("wazuh_agent_id", "wazuh-mgr-01/044"),)),
        ("ip", "10.30.0.5", "target", ()),
        (
            "host",
            "fin-ws-0117.corp.example.com",
            "target",
            (("fqdn", "fin-ws-0117.corp.example.com"), ("hostname", "fin-ws-0117")),
        ),
    }


def test_a_syslog_header_with_an_address_or_localhost() -> None:
    doc = load("syslog_relayed_by_manager.json")
    doc["predecoder"]["hostname"] = "172.16.51.132"
    assert ("ip", "172.16.51.132", "target", ()) in entities(run(doc))
    doc["predecoder"]["hostname"] = "localhost"
    assert {e for e in entities(run(doc)) if e[0] == "host"} == set()


def test_source_addresses_from_other_decoders() -> None:
    doc = load("windows_logon_failure_search_hit.json")
    doc["_source"]["data"]["win"]["eventdata"]["ipAddress"] = "::ffff:198.51.100.9"
    assert ("ip", "198.51.100.9", "source", ()) in entities(run(doc))
    doc = load("sshd_invalid_user_bruteforce.json")
    doc["data"] = {"srcip": "scanner.example.net", "dest_ip": "10.20.1.7", "src_ip": "192.0.2.1"}
    found = entities(run(doc))
    scanner = (("fqdn", "scanner.example.net"), ("hostname", "scanner"))
    assert ("host", "scanner.example.net", "source", scanner) in found  # sshd with UseDNS
    assert ("ip", "192.0.2.1", "source", ()) in found
    assert ("ip", "10.20.1.7", "destination", ()) in found


def test_full_log_names_the_source_only_when_no_decoder_field_does() -> None:
    doc = load("syslog_relayed_by_manager.json")
    del doc["data"]["srcip"]
    (ip,) = (e for e in run(doc).entities if e.role == "source")
    assert (ip.value, ip.attributes) == ("10.40.2.200", {"extracted_from": "full_log"})
    doc["full_log"] = "x" * 9000 + " from 203.0.113.200 port 22"  # past the 8 KiB read
    assert not [e for e in run(doc).entities if e.role == "source"]


def test_a_deleted_file_is_known_by_its_last_hashes() -> None:
    doc = load("fim_whodata_modified.json")
    syscheck = doc["syscheck"]
    syscheck["event"] = "deleted"
    for algo in ("md5", "sha1", "sha256"):
        del syscheck[f"{algo}_after"]
    hashes = {e.value for e in run(doc).entities if e.type.value == "file_hash"}
    assert hashes == {syscheck["md5_before"], syscheck["sha1_before"], syscheck["sha256_before"]}


def test_windows_placeholders_are_not_names() -> None:
    doc = load("windows_logon_failure_search_hit.json")
    event = doc["_source"]["data"]["win"]["eventdata"]
    event.update(targetUserName="-", workstationName="-", ipAddress="-")
    event["targetUserSid"] = "S-1-5-21-1004336348-1177238915-682003330-1104"
    users = {e for e in entities(run(doc)) if e[0] == "user"}
    assert users == {
        (
            "user",
            "s-1-5-21-1004336348-1177238915-682003330-1104",
            "target",
            (("sid", "s-1-5-21-1004336348-1177238915-682003330-1104"),),
        )
    }
    assert {e[0] for e in entities(run(doc)) if e[2] == "source"} == set()


# --- garbage --------------------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = doc
        for part in parents:
            node = node[part]
        node[last] = value

    return mutate


def _drop(path: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = doc
        for part in parents:
            node = node[part]
        del node[last]

    return mutate


def _nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"leaf": "x"}
    for _ in range(depth):
        node = {"n": node}
    return node


GARBAGE: list[tuple[str, str, Mutation, str]] = [
    # required fields: missing, empty, wrong type
    ("sshd", "no id", _drop("id"), "missing required field 'id'"),
    ("sshd", "blank id", _set("id", "   "), "missing required field 'id'"),
    ("sshd", "id object", _set("id", {"epoch": 1}), "field 'id' must be a string, got object"),
    ("sshd", "id bool", _set("id", True), "field 'id' must be a string, got bool"),
    ("sshd", "id too long", _set("id", "1" * 300), "alert id is"),
    ("sshd", "no time", _drop("timestamp"), "missing required field 'timestamp'"),
    ("sshd", "odd time", _set("timestamp", "Jan 15 10:12:03"), "field 'timestamp' must be"),
    ("sshd", "month 13", _set("timestamp", "2026-13-15T10:12:03+0000"), "field 'timestamp'"),
    ("sshd", "time list", _set("timestamp", ["2026-01-15"]), "field 'timestamp' must be"),
    ("sshd", "no title", _drop("rule.description"), "missing required field 'rule.description'"),
    ("sshd", "title list", _set("rule.description", ["a"]), "field 'rule.description' must be"),
    ("sshd", "no rule", _drop("rule"), "missing required object 'rule'"),
    ("sshd", "rule text", _set("rule", "5712"), "field 'rule' must be an object, got string"),
    ("sshd", "rule id object", _set("rule.id", {}), "field 'rule.id' must be a string"),
    ("sshd", "level word", _set("rule.level", "high"), "field 'rule.level' must be a number"),
    ("sshd", "level bool", _set("rule.level", True), "field 'rule.level' must be a number"),
    ("sshd", "level object", _set("rule.level", {}), "field 'rule.level' must be a number"),
    ("sshd", "level nan", _set("rule.level", float("nan")), "field 'rule.level' must be a number"),
    # sub-records that are not objects
    ("sshd", "agent text", _set("agent", "014"), "field 'agent' must be an object, got string"),
    (
        "sshd",
        "manager list",
        _set("manager", ["m"]),
        "field 'manager' must be an object, got array",
    ),
    ("sshd", "cluster text", _set("cluster", "prod"), "field 'cluster' must be an object"),
    ("sshd", "decoder text", _set("decoder", "sshd"), "field 'decoder' must be an object"),
    (
        "sshd",
        "predecoder 1",
        _set("predecoder", 1),
        "field 'predecoder' must be an object, got int",
    ),
    ("sshd", "mitre list", _set("rule.mitre", ["T1110"]), "field 'rule.mitre' must be an object"),
    ("sshd", "data text", _set("data", "srcip=1.2.3.4"), "field 'data' must be an object"),
    ("windows", "win text", _set("_source.data.win", "4625"), "field 'data.win' must be an object"),
    (
        "windows",
        "eventdata list",
        _set("_source.data.win.eventdata", []),
        "field 'data.win.eventdata' must be an object, got array",
    ),
    ("windows", "source text", _set("_source", "{}"), "field '_source' must be an object"),
    ("windows", "source null", _set("_source", None), "'_source' must be an object, got null"),
    ("windows", "geo text", _set("_source.GeoLocation", "NL"), "field 'GeoLocation' must be"),
    ("fim", "syscheck text", _set("syscheck", "/etc"), "field 'syscheck' must be an object"),
    ("fim", "audit number", _set("syscheck.audit", 0), "field 'syscheck.audit' must be an object"),
    ("aws", "identity text", _set("data.aws.userIdentity", "x"), "'data.aws.userIdentity' must"),
    # deeply odd values where a name or an address should be
    ("sshd", "mitre id object", _set("rule.mitre.id", {"T1110": 1}), "field 'rule.mitre.id'"),
    ("sshd", "tactic nested", _set("rule.mitre.tactic", [["x"]]), "field 'rule.mitre.tactic'"),
    ("sshd", "groups object", _set("rule.groups", {"a": 1}), "field 'rule.groups' must be"),
    ("sshd", "srcip object", _set("data.srcip", {"v4": "1.2.3.4"}), "field 'data.srcip' must be"),
    ("sshd", "srcuser nested", _set("data.srcuser", _nested(300)), "field 'data.srcuser' must be"),
    ("sshd", "agent name list", _set("agent.name", [{}]), "field 'agent.name' must be a string"),
    (
        "sshd",
        "agent ip bool",
        _set("agent.ip", False),
        "field 'agent.ip' must be a string, got bool",
    ),
    ("sshd", "manager object", _set("manager.name", {}), "field 'manager.name' must be a string"),
    ("sshd", "full_log object", _set("full_log", {"a": 1}), "field 'full_log' must be a string"),
    (
        "windows",
        "user object",
        _set("_source.data.win.eventdata.targetUserName", {"name": "x"}),
        "field 'data.win.eventdata.targetUserName' must be a string",
    ),
    (
        "windows",
        "computer list",
        _set("_source.data.win.system.computer", [["a"]]),
        "field 'data.win.system.computer' must be a string",
    ),
    ("fim", "hash bool", _set("syscheck.sha256_after", True), "field 'syscheck.sha256_after'"),
    (
        "sysmon",
        "hashes object",
        _set("data.win.eventdata.hashes", {"SHA1": "x"}),
        "field 'data.win.eventdata.hashes' must be a string",
    ),
]
FILES = {
    "sshd": "sshd_invalid_user_bruteforce.json",
    "windows": "windows_logon_failure_search_hit.json",
    "fim": "fim_whodata_modified.json",
    "aws": "aws_cloudtrail_console_login_manager.json",
    "sysmon": "sysmon_encoded_powershell_document.json",
}


@pytest.mark.parametrize(
    ("base", "name", "mutate", "message"), GARBAGE, ids=[g[1] for g in GARBAGE]
)
def test_garbage_is_refused_naming_the_field(
    base: str, name: str, mutate: Mutation, message: str
) -> None:
    doc = load(FILES[base])
    mutate(doc)
    with pytest.raises(NormalizationError) as caught:
        run(doc)
    assert caught.value.format == "wazuh"
    assert message in str(caught.value), str(caught.value)
    assert str(caught.value).startswith("wazuh: ")


def test_huge_lists_respect_the_entity_cap() -> None:
    doc = load("sshd_invalid_user_bruteforce.json")
    doc["data"]["srcip"] = [f"198.18.{i // 250}.{i % 250 + 1}" for i in range(5000)]
    doc["data"]["dstuser"] = [f"user{i}" for i in range(2000)]
    alert = run(doc, max_entities=5)
    assert len(alert.entities) == 5
    # kept: the agent's host and address, three sources; srcuser "oracle" is past the cap
    assert alert.labels[ENTITIES_TRUNCATED] == str(4997 + 2001)
    assert alert.labels[ENTITIES_TRUNCATED_TYPES] == "ip=4997,user=2001"


def test_huge_rule_lists_are_read_in_part() -> None:
    doc = load("sshd_invalid_user_bruteforce.json")
    doc["rule"]["groups"] = [f"group{i}" for i in range(100_000)]
    doc["rule"]["mitre"]["id"] = ["T1110"] + [f"T{1000 + i % 9000:04d}" for i in range(100_000)]
    doc["rule"]["mitre"]["tactic"] = ["Credential Access"] * 100_000
    doc["full_log"] = "A" * 2_000_000
    alert = run(doc)
    assert alert.labels["groups"].startswith("group0,group1,")
    assert len(alert.labels["groups"]) <= 1024
    assert len(alert.techniques) == 64 and alert.techniques[0] == "T1110"
    assert alert.tactics == ["Credential Access"]
    assert alert.description is not None and len(alert.description) <= 16384


def test_odd_but_harmless_values_are_tolerated() -> None:
    doc = load("sshd_invalid_user_bruteforce.json")
    doc["rule"]["mitre"]["id"] = ["T1110", "not-a-technique", 7, "t1078.004"]
    doc["rule"]["mitre"]["tactic"] = ["Credential Access", "Made Up Tactic", "TA0005"]
    doc["data"]["srcip"] = "-"
    doc["data"]["extra"] = _nested(500)
    doc["agent"]["name"] = "bad host name!"  # not a hostname: dropped and counted
    alert = run(doc)
    assert alert.techniques == ["T1110", "T1078.004"]
    assert alert.tactics == ["Credential Access", "Defense Evasion"]
    # "-" is no address, so the log line names the source
    (source,) = (e for e in alert.entities if e.role == "source")
    assert source.attributes == {"extracted_from": "full_log"}
    assert alert.labels["ingest.entities_dropped"] == "1"


# --- against the shipped mapping ------------------------------------------------------------

# What native normalisation adds to, or changes in, what the mapping extracted:
# (type, value, role) only in the native alert, and only in the mapping's.
MAPPING_DIFFERENCES: dict[
    str, tuple[set[tuple[str, str, str | None]], set[tuple[str, str, str | None]]]
] = {
    "pam-login-no-srcip.json": (set(), set()),
    "sshd-brute-force.json": (set(), set()),
    "sshd-login-success.json": (set(), set()),
    "syscheck-modified.json": (
        {("file_hash", "b6589fc6ab0dc82cf12099d1c2d40ab994e8410c", "target")},  # sha1_after
        set(),
    ),
    "windows-logon-failure.json": (
        {
            ("ip", "10.10.30.99", "source"),  # win.eventdata.ipAddress
            ("process", "svchost.exe", "actor"),  # by file name, path as attribute
        },
        {("process", "C:\\Windows\\System32\\svchost.exe", "actor")},
    ),
}


@pytest.mark.parametrize("path", sorted(MAPPING_FIXTURES.glob("*.json")), ids=lambda p: p.name)
def test_native_entities_against_the_shipped_mapping(path: Path) -> None:
    (mapping,) = load_mappings([ROOT / "samples" / "mappings" / "wazuh.yaml"])
    doc = json.loads(path.read_text())
    native, mapped = run(doc), mapping.normalize(doc, received_at=RECEIVED)
    ours = {(e.type.value, e.value, e.role) for e in native.entities}
    theirs = {(e.type.value, e.value, e.role) for e in mapped.entities}
    assert (ours - theirs, theirs - ours) == MAPPING_DIFFERENCES[path.name]
    assert (native.severity, native.created_at, native.title) == (
        mapped.severity,
        mapped.created_at,
        mapped.title,
    )
    assert (native.techniques, native.tactics, native.rule.id) == (
        mapped.techniques,
        mapped.tactics,
        mapped.rule.id,
    )
    # The id gains the manager's name (Wazuh's id is unique per manager only).
    assert native.id == f"wazuh:{doc['manager']['name']}:{doc['id']}" != mapped.id
