"""Synthetic vendor alerts in volume: Suricata EVE alerts and CrowdStrike Falcon detections.

Hosts, users, IPs and TLS names come from pools (`Pools`), so generated alerts
share entities and group into incidents the way a real alert storm does. The
benchmark (`bench/bench_pipeline.py`) and the Kafka tests generate from here;
each picks its own pool sizes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["SIGNATURES", "START", "Pools", "crowdstrike", "document", "suricata"]

START = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)

SIGNATURES = [
    (2024897, "ET MALWARE Cobalt Strike Beacon Observed", 1, "A Network Trojan was detected"),
    (2013028, "ET POLICY curl User-Agent Outbound", 2, "Attempted Information Leak"),
    (2027865, "ET INFO Observed DNS Query to .onion proxy Domain", 2, "Misc activity"),
    (2001219, "ET SCAN Potential SSH Scan", 2, "Attempted Information Leak"),
]


@dataclass(frozen=True)
class Pools:
    """How many distinct values each entity is drawn from: smaller pools, bigger incidents."""

    spacing_seconds: int = 2  # event time between consecutive alerts
    signatures: int = 3  # the first N of SIGNATURES
    source_octets: int = 60  # Suricata sources 10.20.{0-3}.{10..N}
    destinations: int = 30  # 198.51.100.{1..N}
    tls_names: int = 20  # cdn{1..N}.example-c2.net
    endpoints: int = 80  # Falcon hosts ws-0001..ws-N
    users: int = 200  # user1..userN


def document(i: int, rng: random.Random, pools: Pools) -> dict[str, object]:
    """The i-th alert of a stream: Falcon and Suricata in turn."""
    return suricata(i, rng, pools) if i % 2 else crowdstrike(i, rng, pools)


def suricata(i: int, rng: random.Random, pools: Pools = Pools()) -> dict[str, object]:
    sid, sig, sev, cat = rng.choice(SIGNATURES[: pools.signatures])
    ts = START + timedelta(seconds=i * pools.spacing_seconds)
    return {
        "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.%f+0000"),
        "flow_id": 1_000_000_000 + i,
        "in_iface": "ens192",
        "event_type": "alert",
        "src_ip": f"10.20.{rng.randint(0, 3)}.{rng.randint(10, pools.source_octets)}",
        "src_port": 49152 + i % 1000,
        "dest_ip": f"198.51.100.{rng.randint(1, pools.destinations)}",
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
        "tls": {"sni": f"cdn{rng.randint(1, pools.tls_names)}.example-c2.net"},
    }


def crowdstrike(i: int, rng: random.Random, pools: Pools = Pools()) -> dict[str, object]:
    host = f"ws-{rng.randint(1, pools.endpoints):04d}"
    ms = int((START + timedelta(seconds=i * pools.spacing_seconds)).timestamp() * 1000)
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
            "UserName": f"user{rng.randint(1, pools.users)}",
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
