"""ATT&CK ids and entities beyond the basics: Falcon ids, OCSF evidences, GuardDuty types."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from soc_agent.ingest import guardduty_attack, normalize
from soc_agent.ingest._fields import technique_ids
from soc_agent.ingest.guardduty_attack import techniques_for
from soc_agent.models import Alert, Entity, EntityType

ALERTS = Path(__file__).resolve().parents[2] / "fixtures" / "alerts"


def doc(relative: str) -> Any:
    return json.loads((ALERTS / relative).read_text(encoding="utf-8"))


def entity(alert: Alert, kind: EntityType, value: str, role: str | None) -> Entity:
    [found] = [e for e in alert.entities if (e.type, e.value, e.role) == (kind, value, role)]
    return found


def triples(alert: Alert) -> set[tuple[str, str, str | None]]:
    return {(e.type.value, e.value, e.role) for e in alert.entities}


# --- CrowdStrike Falcon: TechniqueId / TacticId -----------------------------------------------


@pytest.mark.parametrize(
    ("file", "technique_id", "tactic_id", "tactic"),
    [
        ("crowdstrike/legacy_credential_dumping.json", "T1003.001", "TA0006", "Credential Access"),
        ("crowdstrike/epp_user_execution_ids.json", "T1204", "TA0002", "Execution"),
    ],
)
def test_falcon_tactic_comes_from_tactic_id_when_tactic_is_a_falcon_category(
    file: str, technique_id: str, tactic_id: str, tactic: str
) -> None:
    record = doc(file)
    event = record["event"]
    assert (event["TechniqueId"], event["TacticId"]) == (technique_id, tactic_id)
    name = event["Technique"]
    event["Tactic"] = "Malware"  # a Falcon category, not an ATT&CK tactic
    alert = normalize(record)
    assert alert.techniques == [technique_id]
    assert alert.tactics == [tactic]
    assert alert.labels["technique"] == name  # the Falcon name stays a label
    assert alert.labels["tactic"] == "Malware"


def test_falcon_sub_technique_id_in_an_epp_event_without_mitre_attack_list() -> None:
    record = doc("crowdstrike/epp_masquerading.json")
    del record["event"]["MitreAttack"]
    assert normalize(record).techniques == []
    record["event"] |= {"TechniqueId": "T1036.005", "TacticId": "TA0005"}
    alert = normalize(record)
    assert alert.techniques == ["T1036.005"]
    assert alert.tactics == ["Defense Evasion"]
    assert alert.labels["technique"] == "Masquerading"


@pytest.mark.parametrize("bad", ["PUP", "", None, 1204, {"id": "T1204"}, "TA0002"])
def test_falcon_ids_that_are_not_attack_ids_are_ignored_not_fatal(bad: Any) -> None:
    record = doc("crowdstrike/epp_ml_minimal.json")
    record["event"] |= {"TechniqueId": bad, "TacticId": bad}
    alert = normalize(record)
    assert alert.techniques == []
    assert alert.tactics == (["Execution"] if bad == "TA0002" else [])


# --- OCSF Detection Finding evidences -----------------------------------------------------------


def test_ocsf_evidence_email_entities_carry_the_message() -> None:
    alert = normalize(doc("ocsf/detection_finding_phish_evidences.json"))
    sender = entity(alert, EntityType.EMAIL, "dse@docu-sign-notice.example", "sender")
    assert sender.attributes == {
        "subject": "Completed: Please DocuSign Q2 vendor agreement",
        "email_uid": "AAMkADk0Nzg5ZTQ2LWQzNWUtNDVmNC1hNWRmLTgzYjc0ZDA2YmQxNwBGAAA=",
        "message_uid": "<5f1c0e7a.0091874@mail.docu-sign-notice.example>",
    }
    cc = entity(alert, EntityType.EMAIL, "finance-ap@northwind.example", "recipient")
    assert cc.attributes["subject"] == sender.attributes["subject"]
    # The observable naming evidences[0].email.to is the same recipient, not a role-less copy.
    assert ("email", "k.ibrahim@northwind.example", None) not in triples(alert)
    attachment = entity(
        alert,
        EntityType.FILE_HASH,
        "8c1e5b7a2f4d6e9c0b3a5d7f9e1c3b5a7d9f1e3c5b7a9d1f3e5c7b9a1d3f5e7c",
        None,
    )
    assert attachment.attributes == {
        "algorithm": "SHA-256",
        "file_name": "Q2_vendor_agreement.html",
    }
    process = entity(alert, EntityType.PROCESS, "mshta.exe", None)
    assert process.attributes["pid"] == "7312"


def test_ocsf_evidence_user_and_email_without_roles_elsewhere() -> None:
    record = doc("ocsf/detection_finding_phish_evidences.json")
    record["evidences"] = [
        {
            "email": {"from": "<payroll@hr-update.example>", "to": "m.lund@northwind.example"},
            "user": {"name": "m.lund", "email_addr": "m.lund@northwind.example"},
        }
    ]
    record["observables"] = [
        {"name": "evidences[0].email.from", "type_id": 5, "value": "payroll@hr-update.example"},
        {"name": "evidences[0].src_endpoint.ip", "type_id": 2, "value": "192.0.2.14"},
    ]
    assert triples(normalize(record)) == {
        ("email", "payroll@hr-update.example", "sender"),
        ("email", "m.lund@northwind.example", "recipient"),
        ("user", "m.lund", None),
        ("email", "m.lund@northwind.example", None),
        ("ip", "192.0.2.14", "source"),
    }


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            {"url_string": "https://login.m365-verify.example:8443/oauth?x=1"},
            {("domain", "login.m365-verify.example", None)},
        ),
        ({"url_string": "http://198.51.100.9/a.hta"}, {("ip", "198.51.100.9", None)}),
        ({"url_string": "http://[2001:db8::7]/p"}, {("ip", "2001:db8::7", None)}),
        ({"url_string": "http://[2001:db8::7/p"}, set()),  # malformed: the url alone
        ({"url_string": "/relative/path"}, set()),
        ({"hostname": "Files.Share-Drop.example"}, {("domain", "files.share-drop.example", None)}),
    ],
)
def test_ocsf_url_host_becomes_a_domain_or_ip(
    url: dict[str, str], expected: set[tuple[str, str, None]]
) -> None:
    record = doc("ocsf/detection_finding_phish_evidences.json")
    record |= {"evidences": [{"url": url}], "observables": []}
    found = triples(normalize(record))
    assert found - {("url", url.get("url_string", ""), None)} == expected


def test_ocsf_url_observable_also_yields_its_host() -> None:
    record = doc("ocsf/security_finding_v1_0_web.json")
    record["observables"] = [
        {"name": "http_request.url.url_string", "type_id": 6, "value": "https://Shop.Example.com/x"}
    ]
    assert triples(normalize(record)) == {
        ("url", "https://Shop.Example.com/x", None),
        ("domain", "shop.example.com", None),
    }


# --- Splunk ES ----------------------------------------------------------------------------------


def test_splunk_nt_hosts_keep_their_windows_domain() -> None:
    alert = normalize(doc("splunk/notable_lateral_nt_hosts.json"))
    assert entity(alert, EntityType.HOST, "ws-fin-021", "source").attributes == {"domain": "CORP"}
    assert entity(alert, EntityType.HOST, "fs-corp-02", "destination").attributes == {
        "domain": "CORP"
    }


def test_splunk_orig_host_may_be_an_ip() -> None:
    record = doc("splunk/notable_lateral_nt_hosts.json") | {"orig_host": "10.30.1.12"}
    assert ("ip", "10.30.1.12", None) in triples(normalize(record))


# --- Microsoft Graph ------------------------------------------------------------------------------


def test_graph_analyzed_message_senders_and_recipient_carry_the_message() -> None:
    alert = normalize(doc("ms_graph/mdo_phish.json"))
    for value, role in (
        ("noreply@example-invoices.net", "sender"),
        ("billing@example-invoices.net", "sender"),
        ("ap-team@example.com", "recipient"),
    ):
        assert entity(alert, EntityType.EMAIL, value, role).attributes == {
            "subject": "Overdue invoice #88213",
            "message_id": "<CAF1x2y3z@mail.example-invoices.net>",
            "network_message_id": "5e4d3c2b-1a09-4f8e-7d6c-5b4a39281706",
        }


# --- AWS GuardDuty --------------------------------------------------------------------------------


def test_guardduty_access_key_is_a_cloud_resource_target() -> None:
    alert = normalize(doc("guardduty/eventbridge_iam_anomalous_api.json"))
    key = entity(alert, EntityType.CLOUD_RESOURCE, "ASIAEXAMPLE7XQ3ZJ4KD", "target")
    finding = doc("guardduty/eventbridge_iam_anomalous_api.json")["detail"]
    details = finding["resource"]["accessKeyDetails"]
    assert key.attributes == {
        "provider": "aws",
        "resource_type": "AWS::IAM::AccessKey",
        "kind": "access_key",
        "principal_id": details["principalId"],
        "user_name": "ci-deployer",
        "user_type": details["userType"],
        "account": finding["accountId"],
    }


def test_guardduty_pascal_case_access_key_details() -> None:
    record = doc("guardduty/ec2_ssh_bruteforce_pascal.json")
    record["Resource"]["AccessKeyDetails"] = {
        "AccessKeyId": "AKIAEXAMPLE00PASCAL1",
        "PrincipalId": "AIDAEXAMPLEPRINCIPAL1",
        "UserName": "ops-bot",
        "UserType": "IAMUser",
    }
    alert = normalize(record)
    key = entity(alert, EntityType.CLOUD_RESOURCE, "AKIAEXAMPLE00PASCAL1", "target")
    assert key.attributes["kind"] == "access_key"
    assert key.attributes["principal_id"] == "AIDAEXAMPLEPRINCIPAL1"


@pytest.mark.parametrize(
    ("finding_type", "techniques"),
    [
        (
            "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
            ["T1552.005", "T1078.004"],
        ),
        (
            "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.InsideAWS",
            ["T1552.005", "T1078.004"],
        ),
        ("UnauthorizedAccess:IAMUser/MaliciousIPCaller.Custom", ["T1078.004"]),
        ("UnauthorizedAccess:IAMUser/MaliciousIPCaller", ["T1078.004"]),
        ("UnauthorizedAccess:EC2/SSHBruteForce", ["T1110"]),
        ("unauthorizedaccess:ec2/rdpbruteforce", ["T1110"]),  # case does not matter
        ("Recon:EC2/PortProbeUnprotectedPort", ["T1595"]),
        ("Recon:EC2/Portscan", ["T1046"]),
        ("Recon:IAMUser/MaliciousIPCaller.Custom", ["T1580"]),
        ("Backdoor:EC2/C&CActivity.B!DNS", ["T1071"]),
        ("CryptoCurrency:EC2/BitcoinTool.B!DNS", ["T1496"]),
        ("Impact:EC2/BitcoinDomainRequest.Reputation", ["T1496"]),
        ("Exfiltration:S3/MaliciousIPCaller", ["T1530"]),
        ("Discovery:S3/AnomalousBehavior", ["T1580"]),
        ("Discovery:Kubernetes/TorIPCaller", ["T1613"]),
        ("Persistence:IAMUser/AnomalousBehavior", ["T1098"]),
        ("Stealth:IAMUser/CloudTrailLoggingDisabled", ["T1562.008"]),
        ("PrivilegeEscalation:Runtime/DockerSocketAccessed", ["T1611"]),
        # No single technique describes these: nothing rather than a guess.
        ("CredentialAccess:IAMUser/AnomalousBehavior", []),
        ("Impact:EC2/MaliciousDomainRequest.Reputation", []),
        ("Persistence:Kubernetes/SuccessfulAnonymousAccess", []),
        ("Trojan:EC2/BlackholeTraffic!DNS", []),
        ("Policy:S3/BucketPublicAccessGranted", []),
        ("Made:Up/Type", []),
        ("", []),
        (None, []),
    ],
)
def test_guardduty_finding_type_techniques(finding_type: str | None, techniques: list[str]) -> None:
    assert techniques_for(finding_type) == techniques


def test_guardduty_technique_table_holds_valid_ids_and_says_it_is_ours() -> None:
    assert guardduty_attack.__doc__ is not None
    assert "not AWS's" in guardduty_attack.__doc__
    for pattern, tids in guardduty_attack.GUARDDUTY_TECHNIQUES:
        assert tids and technique_ids(tids) == list(tids), pattern


def test_guardduty_finding_type_techniques_reach_the_alert() -> None:
    record = doc("guardduty/eventbridge_iam_anomalous_api.json")
    record["detail"]["type"] = (
        "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS"
    )
    alert = normalize(copy.deepcopy(record))
    assert alert.techniques == ["T1552.005", "T1078.004"]
    assert alert.tactics == []  # "UnauthorizedAccess" is not an ATT&CK tactic
    assert alert.rule.id == record["detail"]["type"]
