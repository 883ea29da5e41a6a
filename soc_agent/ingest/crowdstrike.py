"""CrowdStrike Falcon streaming API detection events.

Two shapes: the legacy `DetectionSummaryEvent` (DetectId, Severity 1-5,
ComputerName) and `EPPDetectionSummaryEvent` (CompositeId, Severity 0-100 with
SeverityName, Hostname). Falcon's `Technique` is usually a Falcon name ("PUP",
"Masquerading"), not an ATT&CK id: only valid T-ids become techniques, and the
names are kept in labels. ATT&CK ids come from `TechniqueId` ("T1036.005") and
`TacticId` ("TA0005", mapped to the tactic's name) and from `MitreAttack[]`.
`Tactic` becomes a tactic only when it is an ATT&CK tactic name ("Malware" and
"Machine Learning" are Falcon categories).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from soc_agent.errors import NormalizationError
from soc_agent.ingest._fields import (
    MAX_ENTITIES,
    AlertDraft,
    TimeUnit,
    as_list,
    get,
    opt_number,
    opt_str,
    parse_time,
    severity_from_word,
)
from soc_agent.models import Alert, EntityType, Severity

__all__ = ["FORMAT", "IOC_TYPES", "matches", "normalize"]

FORMAT = "crowdstrike"
_LEGACY = "detectionsummaryevent"
_EPP = "eppdetectionsummaryevent"
_LEGACY_SEVERITY = {
    1: Severity.INFORMATIONAL,
    2: Severity.LOW,
    3: Severity.MEDIUM,
    4: Severity.HIGH,
    5: Severity.CRITICAL,
}
# Falcon's IOC types (streaming events and the Alerts API alike): entity type, hash algorithm.
IOC_TYPES: dict[str, tuple[EntityType, str | None]] = {
    "hash_sha256": (EntityType.FILE_HASH, "sha256"),
    "hash_md5": (EntityType.FILE_HASH, "md5"),
    "hash_sha1": (EntityType.FILE_HASH, "sha1"),
    "domain": (EntityType.DOMAIN, None),
    "ipv4": (EntityType.IP, None),
    "ipv6": (EntityType.IP, None),
    "url": (EntityType.URL, None),
}


def matches(doc: dict[str, Any]) -> bool:
    metadata = doc.get("metadata")
    return (
        isinstance(metadata, dict)
        and isinstance(metadata.get("eventType"), str)
        and ("customerIDString" in metadata or isinstance(doc.get("event"), dict))
    )


def normalize(
    doc: dict[str, Any], *, received_at: datetime | None = None, max_entities: int = MAX_ENTITIES
) -> Alert:
    f = FORMAT
    event_type = opt_str(doc, "metadata.eventType", f) or ""
    kind = event_type.lower()
    if kind not in (_LEGACY, _EPP):
        raise NormalizationError(
            f"unsupported CrowdStrike eventType {event_type[:60]!r}: only DetectionSummaryEvent "
            "and EPPDetectionSummaryEvent are alerts",
            format=f,
        )
    event = doc.get("event")
    if not isinstance(event, dict):
        raise NormalizationError("missing required object 'event'", format=f)
    legacy = kind == _LEGACY
    draft = AlertDraft(
        format=f, vendor="CrowdStrike", product="Falcon", original=doc, max_entities=max_entities
    )

    id_fields = ("event.DetectId",) if legacy else ("event.CompositeId", "event.DetectId")
    for path in id_fields:
        draft.vendor_id = draft.vendor_id or opt_str(doc, path, f)
    if draft.vendor_id is None:
        raise NormalizationError(f"missing required field '{id_fields[0]}'", format=f)

    name = opt_str(doc, "event.DetectName" if legacy else "event.Name", f)
    technique = opt_str(doc, "event.Technique", f)
    tactic = opt_str(doc, "event.Tactic", f)
    draft.rule_name = name or technique
    if name and technique and technique.lower() != name.lower():
        draft.title = f"{name}: {technique}"
    else:
        draft.title = name or technique
    draft.description = opt_str(
        doc, "event.DetectDescription" if legacy else "event.Description", f
    )
    draft.rule_description = draft.description
    pattern = opt_str(doc, "event.PatternId", f)
    draft.rule_id = pattern

    score = opt_number(doc, "event.Severity", f)
    word = severity_from_word(opt_str(doc, "event.SeverityName", f))
    if legacy:
        if word is None and score is not None and int(score) not in _LEGACY_SEVERITY:
            raise NormalizationError(
                f"field 'event.Severity' must be 1-5 in a DetectionSummaryEvent, got {score:g}",
                format=f,
            )
        draft.severity = word or (_LEGACY_SEVERITY.get(int(score)) if score is not None else None)
    else:
        if score is not None and 0 <= score <= 100:
            draft.risk_score = score
        draft.severity = word or (Severity.from_score(score) if score is not None else None)
    if draft.severity is None:
        raise NormalizationError("missing required field 'event.Severity'", format=f)

    times: list[tuple[str, TimeUnit]] = (
        [("event.ProcessStartTime", "epoch_s"), ("metadata.eventCreationTime", "epoch_ms")]
        if legacy
        else [("metadata.eventCreationTime", "epoch_ms"), ("event.ProcessStartTime", "epoch_s")]
    )
    for path, unit in times:
        value = get(doc, path)
        if value not in (None, 0):
            draft.created_at = parse_time(value, unit=unit, fmt=f, path=path)
            break

    draft.techniques += [technique, event.get("TechniqueId") or event.get("TechniqueID")]
    draft.tactic(event.get("TacticId") or event.get("TacticID"))
    draft.tactic(tactic)
    for entry in as_list(event.get("MitreAttack"))[:32]:
        if isinstance(entry, dict):
            draft.techniques += [entry.get("TechniqueID"), entry.get("Technique")]
            draft.tactic(entry.get("TacticID") or entry.get("Tactic"))
    _entities(draft, event)

    draft.label("event_type", event_type)
    draft.label("technique", technique)
    draft.label("tactic", tactic)
    for key, field in (
        ("objective", "Objective"),
        ("pattern_disposition", "PatternDispositionDescription"),
        ("falcon_host_link", "FalconHostLink"),
        ("agent_id", "AgentId"),
        ("sensor_id", "SensorId"),
        ("aggregate_id", "AggregateId"),
        ("detection_type", "Type"),
        ("severity_name", "SeverityName"),
    ):
        draft.label(key, opt_str(event, field, f))
    draft.label("customer_id", opt_str(doc, "metadata.customerIDString", f))
    return draft.build(received_at)


def _entities(draft: AlertDraft, event: dict[str, Any]) -> None:
    ents = draft.entities
    agent_id = event.get("AgentId") or event.get("SensorId")
    ents.add_host(
        event.get("ComputerName") or event.get("Hostname"),
        ids={"falcon_aid": agent_id},
        agent_id=agent_id,
        mac=event.get("MACAddress"),
        domain=event.get("MachineDomain"),
    )
    ents.add(EntityType.IP, event.get("LocalIP"))
    ents.add_user(
        "actor",
        account=event.get("UserName"),
        domain=event.get("LogonDomain") or event.get("MachineDomain"),
        sid=event.get("UserId") or event.get("UserSid"),
    )
    file_name, path = event.get("FileName"), event.get("FilePath")
    for algo, field in (("sha256", "SHA256String"), ("sha1", "SHA1String"), ("md5", "MD5String")):
        ents.add(
            EntityType.FILE_HASH, event.get(field), algorithm=algo, file_name=file_name, path=path
        )
    ents.add(
        EntityType.PROCESS,
        file_name,
        pid=event.get("ProcessId"),
        command_line=event.get("CommandLine"),
        path=path,
    )
    ents.add(
        EntityType.PROCESS,
        event.get("ParentImageFileName"),
        "parent",
        pid=event.get("ParentProcessId"),
        command_line=event.get("ParentCommandLine"),
    )
    ioc_type, ioc_value = event.get("IOCType"), event.get("IOCValue")
    if isinstance(ioc_type, str) and ioc_type.lower() in IOC_TYPES:
        ioc_kind, ioc_algo = IOC_TYPES[ioc_type.lower()]
        ents.add(ioc_kind, ioc_value, algorithm=ioc_algo)
    for access in as_list(event.get("NetworkAccesses")):
        if not isinstance(access, dict):
            continue
        inbound = access.get("ConnectionDirection") == 1
        ents.add(EntityType.IP, access.get("RemoteAddress"), "source" if inbound else "destination")
        ents.add(EntityType.IP, access.get("LocalAddress"), "destination" if inbound else "source")
