"""Suricata EVE JSON, `event_type: alert` records.

EVE has no alert id, so the id is built from what identifies one alert: the flow,
the signature, the transaction and the timestamp. Other event types (dns, flow,
tls, ...) are recognised as Suricata so that they dead-letter with a clear reason.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any

from soc_agent.errors import NormalizationError
from soc_agent.ingest._fields import (
    MAX_ENTITIES,
    AlertDraft,
    as_list,
    get,
    looks_like_ip,
    opt_number,
    opt_str,
    parse_time,
    req_str,
)
from soc_agent.models import Alert, EntityType, Severity

__all__ = ["FORMAT", "matches", "normalize"]

FORMAT = "suricata"
# Suricata priority: 1 is the most severe; ET rules use 1-3, local rules may go beyond.
_SEVERITY = {1: Severity.HIGH, 2: Severity.MEDIUM, 3: Severity.LOW}


def matches(doc: dict[str, Any]) -> bool:
    return (
        isinstance(doc.get("event_type"), str)
        and "timestamp" in doc
        and any(key in doc for key in ("src_ip", "dest_ip", "flow_id", "alert"))
    )


def _stable_id(doc: dict[str, Any]) -> str | None:
    flow_id = doc.get("flow_id")
    sid = get(doc, "alert.signature_id")
    if flow_id is None or sid is None:
        return None
    parts = [flow_id, sid, doc.get("tx_id"), doc.get("timestamp")]
    text = "|".join("" if p is None else str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def normalize(
    doc: dict[str, Any], *, received_at: datetime | None = None, max_entities: int = MAX_ENTITIES
) -> Alert:
    f = FORMAT
    event_type = req_str(doc, "event_type", f)
    if event_type != "alert":
        raise NormalizationError(
            f"unsupported Suricata event_type {event_type[:40]!r}: only 'alert' records are alerts",
            format=f,
        )
    if not isinstance(doc.get("alert"), dict):
        raise NormalizationError("missing required object 'alert'", format=f)
    draft = AlertDraft(
        format=f, vendor="OISF", product="Suricata", original=doc, max_entities=max_entities
    )
    draft.vendor_id = _stable_id(doc)
    draft.title = req_str(doc, "alert.signature", f)
    sid = opt_number(doc, "alert.signature_id", f)
    draft.rule_id = str(int(sid)) if sid is not None else None
    draft.rule_name = draft.title
    draft.description = opt_str(doc, "alert.category", f)
    level = opt_number(doc, "alert.severity", f)
    if level is None:
        draft.severity = Severity.MEDIUM
    else:
        draft.severity = _SEVERITY.get(int(level), Severity.INFORMATIONAL)
    draft.created_at = parse_time(doc.get("timestamp"), unit="iso", fmt=f, path="timestamp")

    meta = get(doc, "alert.metadata")
    if isinstance(meta, dict):
        _attack(draft, meta)
        draft.label("signature_severity", meta.get("signature_severity"))

    _entities(draft, doc)
    draft.label("flow_id", doc.get("flow_id"))
    draft.label("tx_id", doc.get("tx_id"))
    draft.label("signature_rev", get(doc, "alert.rev"))
    draft.label("gid", get(doc, "alert.gid"))
    draft.label("action", get(doc, "alert.action"))
    draft.label("proto", doc.get("proto"))
    draft.label("app_proto", doc.get("app_proto"))
    draft.label("in_iface", doc.get("in_iface"))
    draft.label("sensor", doc.get("host"))
    draft.label("src_port", doc.get("src_port"))
    draft.label("dest_port", doc.get("dest_port"))
    return draft.build(received_at)


# `t1071_001`, `T1071.001`: rule writers spell sub-techniques both ways, in either case.
_TECHNIQUE = re.compile(r"^t\d{4}(?:[._]\d{3})?$", re.IGNORECASE)


def _attack(draft: AlertDraft, meta: dict[str, Any]) -> None:
    """ATT&CK ids and names from any `mitre_*` metadata key (ET's `mitre_technique_id`,
    `mitre_tactic_name`, rule sets' `mitre_attack`, ...), each value placed by its shape:
    rule writers mix tactics and techniques in one list and write ids in lower case."""
    for key in sorted(meta):
        if not (isinstance(key, str) and key.lower().startswith("mitre")):
            continue
        if key.lower().endswith("technique_name"):
            continue  # technique names ("Application_Layer_Protocol") are not ids
        for value in as_list(meta[key])[:32]:
            if not isinstance(value, str):
                continue
            if _TECHNIQUE.match(value.strip()):
                draft.techniques.append(value.strip().replace("_", "."))
            else:
                draft.tactic(value)


def _entities(draft: AlertDraft, doc: dict[str, Any]) -> None:
    ents = draft.entities
    # Suricata 6+ may say which side is the attacker (rules with `target:`).
    attacker, target = get(doc, "alert.source.ip"), get(doc, "alert.target.ip")
    ents.add(EntityType.IP, attacker, "attacker")
    ents.add(EntityType.IP, target, "target")
    ents.add(EntityType.IP, doc.get("src_ip"), "source")
    ents.add(EntityType.IP, doc.get("dest_ip"), "destination")

    hostname = get(doc, "http.hostname")
    if isinstance(hostname, str) and not looks_like_ip(hostname):
        ents.add(EntityType.DOMAIN, hostname, "destination")
    url = get(doc, "http.url")
    if isinstance(url, str) and url:
        if url.startswith("/") and isinstance(hostname, str) and hostname:
            port = get(doc, "http.http_port")
            netloc = f"{hostname}:{port}" if isinstance(port, int) and port != 80 else hostname
            url = f"http://{netloc}{url}"
        if "://" in url:
            ents.add(EntityType.URL, url, "destination")
    ents.add(EntityType.DOMAIN, get(doc, "tls.sni"), "destination")
    dns = doc.get("dns")
    if isinstance(dns, dict):
        ents.add(EntityType.DOMAIN, dns.get("rrname"), "destination")
        for query in as_list(dns.get("query")):
            if isinstance(query, dict):
                ents.add(EntityType.DOMAIN, query.get("rrname"), "destination")
    ents.add(
        EntityType.FILE_HASH,
        get(doc, "fileinfo.sha256"),
        algorithm="sha256",
        file_name=get(doc, "fileinfo.filename"),
    )
    ents.add(EntityType.EMAIL, get(doc, "smtp.mail_from"), "sender")
    ents.add(EntityType.EMAIL, get(doc, "smtp.rcpt_to"), "recipient")
