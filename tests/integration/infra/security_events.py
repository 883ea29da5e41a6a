"""Realistic ECS security events and an ECS-shaped mapping, for seeding a real Elasticsearch.

Deterministic (seeded): tests compute what a query must return from the same
list they indexed, so every assertion is checked against the data itself.
"""

from __future__ import annotations

import ipaddress
import random
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["ECS_MAPPING", "START", "WINDOW", "generate_events", "parse_ts"]

START = datetime(2026, 11, 19, 0, 0, tzinfo=UTC)
WINDOW = timedelta(hours=24)

ECS_MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "@timestamp": {"type": "date"},
        "message": {"type": "text"},
        "event": {
            "properties": {
                "id": {"type": "keyword"},
                "kind": {"type": "keyword"},
                "category": {"type": "keyword"},
                "type": {"type": "keyword"},
                "action": {"type": "keyword"},
                "outcome": {"type": "keyword"},
                "dataset": {"type": "keyword"},
                "severity": {"type": "long"},
            }
        },
        "host": {
            "properties": {
                "name": {"type": "keyword"},
                "ip": {"type": "ip"},
                "os": {"properties": {"type": {"type": "keyword"}}},
            }
        },
        "user": {
            "properties": {
                "name": {"type": "keyword"},
                "domain": {"type": "keyword"},
            }
        },
        "source": {"properties": {"ip": {"type": "ip"}, "port": {"type": "long"}}},
        "destination": {"properties": {"ip": {"type": "ip"}, "port": {"type": "long"}}},
        "process": {
            "properties": {
                "name": {"type": "keyword"},
                "pid": {"type": "long"},
                "command_line": {"type": "keyword"},
            }
        },
    },
}

_HOSTS = [
    ("ws-fin-014", "10.20.3.14", "windows"),
    ("ws-fin-022", "10.20.3.22", "windows"),
    ("ws-hr-007", "10.20.5.7", "windows"),
    ("srv-dc-01", "10.20.0.10", "windows"),
    ("srv-web-03", "10.20.8.30", "linux"),
    ("srv-db-02", "10.20.8.42", "linux"),
]
_USERS = ["alice.nguyen", "bob.okafor", "carol.diaz", "dave.kim", "svc_backup", "administrator"]
_EXTERNAL = ["203.0.113.45", "203.0.113.77", "198.51.100.23", "198.51.100.200"]

# (category, type, action, outcome, dataset, severity, weight)
_KINDS = [
    ("authentication", "start", "logged-in", "success", "windows.security", 1, 30),
    ("authentication", "start", "logon-failed", "failure", "windows.security", 3, 20),
    ("process", "start", "process-started", "success", "endpoint.events.process", 2, 20),
    ("network", "connection", "connection-attempted", "success", "network.flow", 1, 15),
    ("network", "denied", "connection-denied", "failure", "firewall.log", 4, 8),
    ("file", "creation", "file-created", "success", "endpoint.events.file", 2, 7),
]
_PROCESSES = [
    ("powershell.exe", "powershell.exe -nop -w hidden -enc SQBFAFgA"),
    ("cmd.exe", "cmd.exe /c whoami /all"),
    ("rundll32.exe", "rundll32.exe C:\\Users\\Public\\a.dll,Start"),
    ("sshd", "/usr/sbin/sshd -D"),
]


def parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def generate_events(count: int = 500, seed: int = 7) -> list[dict[str, Any]]:
    """`count` ECS events spread over `WINDOW` from `START`, sorted by time."""
    rng = random.Random(seed)
    weights = [kind[-1] for kind in _KINDS]
    offsets = sorted(rng.uniform(0, WINDOW.total_seconds()) for _ in range(count))
    events: list[dict[str, Any]] = []
    for index, offset in enumerate(offsets):
        category, type_, action, outcome, dataset, severity, _ = rng.choices(_KINDS, weights)[0]
        host, host_ip, os_type = rng.choice(_HOSTS)
        user = rng.choice(_USERS)
        external = category == "authentication" and outcome == "failure" and rng.random() < 0.6
        source_ip = (
            rng.choice(_EXTERNAL)
            if external
            else str(
                ipaddress.IPv4Address("10.20.0.0")
                + rng.choice([3, 5, 8]) * 256
                + rng.randint(2, 60)
            )
        )
        timestamp = START + timedelta(seconds=offset)
        event: dict[str, Any] = {
            "@timestamp": timestamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "event": {
                "id": f"evt-{index:04d}",
                "kind": "event",
                "category": [category],
                "type": [type_],
                "action": action,
                "outcome": outcome,
                "dataset": dataset,
                "severity": severity,
            },
            "host": {"name": host, "ip": host_ip, "os": {"type": os_type}},
            "user": {"name": user, "domain": "CORP"},
            "source": {"ip": source_ip, "port": rng.randint(1024, 65535)},
            "destination": {"ip": host_ip, "port": rng.choice([22, 443, 445, 3389, 5985])},
            "message": f"{action} for {user} on {host} from {source_ip}",
        }
        if category == "process":
            name, command_line = rng.choice(_PROCESSES)
            event["process"] = {
                "name": name,
                "pid": rng.randint(400, 40000),
                "command_line": command_line,
            }
        events.append(event)
    return events
