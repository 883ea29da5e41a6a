"""Builders shared by the playbook engine tests: real models, realistic values."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from soc_agent.models import Alert, Entity, Incident
from soc_agent.playbooks import Playbook

T0 = datetime(2026, 11, 20, 10, 33, tzinfo=UTC)
BAD_HASH = "498b72190a65c7fbdaa0ccb8bde413c30fa106403600864c9138d07dc8a37b41"
OTHER_HASH = "85c63cfe133f096280fd3b225541ee052406ffe3bbcefd8eb6be8f512495346e"


def make_alert(**overrides: Any) -> Alert:
    data: dict[str, Any] = {
        "id": "crowdstrike:ind:4b1f2e9a:38654705664-10305-2213",
        "format": "crowdstrike",
        "vendor": "CrowdStrike",
        "product": "Falcon Insight",
        "rule": {"id": "10305", "name": "Known Malware"},
        "title": "Known Malware: User Execution",
        "severity": "critical",
        "created_at": T0,
        "entities": [
            {"type": "host", "value": "ws-fin-042"},
            {"type": "user", "value": "jdoe", "role": "actor"},
            {"type": "ip", "value": "10.20.10.42"},
            {"type": "file_hash", "value": BAD_HASH},
            {"type": "file_hash", "value": OTHER_HASH},
        ],
        "techniques": ["T1204.002"],
        "original": {"event": {"Hostname": "WS-FIN-042"}},
    }
    data.update(overrides)
    return Alert.model_validate(data)


def make_incident(alert: Alert, **overrides: Any) -> Incident:
    data: dict[str, Any] = {
        "id": f"incident:{alert.id}",
        "title": alert.title,
        "severity": alert.severity,
        "alert_ids": [alert.id],
        "entities": [Entity.model_validate(e.model_dump()) for e in alert.entities],
        "first_seen": alert.created_at,
        "last_seen": alert.created_at,
    }
    data.update(overrides)
    return Incident.model_validate(data)


def playbook(text: str) -> Playbook:
    """A playbook from YAML text through the real loader (so semantic checks apply)."""
    import tempfile

    from soc_agent.playbooks import load_playbook_file

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pb.yaml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return load_playbook_file(path)


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def intel(indicator: str, verdict: str, kind: str = "file_hash", score: int = 90) -> dict[str, Any]:
    """A threat_intel.lookup output, shaped like the connector's LookupOutput."""
    return {
        "indicator": indicator,
        "type": kind,
        "found": verdict != "unknown",
        "verdict": verdict,
        "score": score if verdict in ("malicious", "suspicious") else 0,
        "sources": ["malware-bazaar"] if verdict != "unknown" else [],
        "tags": [],
    }


def asset(value: str, criticality: str = "medium", *, protected: bool = False) -> dict[str, Any]:
    """An asset_inventory.lookup_asset output (AssetOutput)."""
    return {
        "type": "host",
        "value": value,
        "found": True,
        "criticality": criticality,
        "owner": "j.doe@acme.example",
        "protected": protected,
        "tags": ["workstation"],
        "dependents": 1,
        "attributes": {},
    }


def search(total: int, buckets: dict[str, int] | None = None) -> dict[str, Any]:
    """An event_store.search output (SearchOutput)."""
    buckets = buckets or {}
    return {"total": total, "events": [], "buckets": buckets, "distinct": len(buckets)}
