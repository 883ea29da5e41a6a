"""Vendor-shaped alert streams for the Kafka tests: Suricata EVE alerts and Falcon detections.

Hosts, users and IPs come from small pools, so alerts group into incidents,
some Suricata alerts repeat a fingerprint (suppressed duplicates), a share of
records is published twice (redeliveries, as an at-least-once pipeline does)
and a share is malformed in the ways real pipelines break records.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from soc_agent.ingest import parse_payload

START = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)

SIGNATURES = [
    (2024897, "ET MALWARE Cobalt Strike Beacon Observed", 1, "A Network Trojan was detected"),
    (2013028, "ET POLICY curl User-Agent Outbound", 2, "Attempted Information Leak"),
    (2027865, "ET INFO Observed DNS Query to .onion proxy Domain", 2, "Misc activity"),
]


def malformed(i: int) -> bytes:
    """A broken record, one of the ways real pipelines break them; distinct per `i`."""
    kind = i % 6
    if kind == 0:  # truncated in transit
        return b'{"timestamp": "2026-11-20T08:00:00+0000", "flow_id": %d, "src_ip": ' % i
    if kind == 1:  # not UTF-8
        return b"\xff\xfe\x00garbage-%d" % i
    if kind == 2:  # Suricata, but not an alert event
        return b'{"event_type": "flow", "flow_id": %d, "src_ip": "10.0.0.1"}' % i
    if kind == 3:  # JSON no normaliser knows
        return b'{"hello": "world", "n": %d}' % i
    if kind == 4:  # empty record
        return b""
    return b'{"metadata": {"eventType": "EPPDetectionSummaryEvent", "offset": %d}, "event": 7}' % i


def suricata(i: int, rng: random.Random) -> dict[str, object]:
    sid, sig, sev, cat = rng.choice(SIGNATURES)
    ts = START + timedelta(seconds=i * 2)
    return {
        "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.%f+0000"),
        "flow_id": 1_000_000_000 + i,
        "in_iface": "ens192",
        "event_type": "alert",
        "src_ip": f"10.20.{rng.randint(0, 3)}.{rng.randint(10, 60)}",
        "src_port": 49152 + i % 1000,
        "dest_ip": f"198.51.100.{rng.randint(1, 30)}",
        "dest_port": 443,
        "proto": "TCP",
        "tx_id": 0,
        "alert": {
            "action": "allowed",
            "gid": 1,
            "signature_id": sid,
            "rev": 3,
            "signature": sig,
            "category": cat,
            "severity": sev,
        },
        "app_proto": "tls",
        "tls": {"sni": f"cdn{rng.randint(1, 20)}.example-c2.net"},
    }


def crowdstrike(i: int, rng: random.Random) -> dict[str, object]:
    host = f"ws-{rng.randint(1, 80):04d}"
    ms = int((START + timedelta(seconds=i * 2)).timestamp() * 1000)
    return {
        "metadata": {
            "customerIDString": "8f1b2c3d4e5f",
            "offset": i,
            "eventType": "EPPDetectionSummaryEvent",
            "eventCreationTime": ms,
            "version": "1.0",
        },
        "event": {
            "Hostname": host.upper(),
            "UserName": f"user{rng.randint(1, 200)}",
            "Name": "MaliciousFile",
            "Description": "A file matched a malware signature",
            "Severity": rng.choice([30, 50, 70, 90]),
            "SeverityName": "High",
            "FileName": "invoice.exe",
            "FilePath": "\\Device\\HarddiskVolume3\\Users\\x",
            "CommandLine": "invoice.exe /s",
            "SHA256String": f"{rng.getrandbits(256):064x}",
            "MD5String": f"{rng.getrandbits(128):032x}",
            "CompositeId": f"8f1b2c3d4e5f:ind:{rng.getrandbits(128):032x}:{i}",
            "AgentId": f"{rng.getrandbits(128):032x}",
            "LocalIP": f"10.20.1.{int(host[3:]) % 250 + 1}",
            "Tactic": "Execution",
            "Technique": "User Execution",
            "Objective": "Falcon Detection Method",
            "PatternDispositionValue": 2048,
        },
    }


@dataclass
class Stream:
    """The records to publish, and what the test must find for them."""

    records: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    alert_ids: set[str] = field(default_factory=set)  # every well-formed alert
    malformed: list[bytes] = field(default_factory=list)  # one DLQ record each
    redelivered: int = 0


def make_stream(
    n: int, *, malformed_share: float = 0.05, redeliver_every: int = 10, seed: int = 7
) -> Stream:
    """`n` well-formed records (half Suricata, half Falcon), redeliveries and malformed ones."""
    rng = random.Random(seed)
    out = Stream()
    bad = int(n * malformed_share)
    bad_at = set(rng.sample(range(n), bad))
    for i in range(n):
        doc = suricata(i, rng) if i % 2 else crowdstrike(i, rng)
        value = json.dumps(doc).encode()
        alerts = parse_payload(value, source="gen").alerts
        assert len(alerts) == 1, "the generator must produce well-formed alerts"
        alert = alerts[0]
        key = next((e.key for e in alert.entities if e.type.value in ("host", "ip")), None)
        out.records.append((key.encode() if key else None, value))
        out.alert_ids.add(alert.id)
        if i % redeliver_every == 0:
            out.records.append((key.encode() if key else None, value))
            out.redelivered += 1
        if i in bad_at:
            junk = malformed(i)
            out.records.append((b"junk", junk))
            out.malformed.append(junk)
    return out
