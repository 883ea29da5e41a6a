"""OCSF findings: Detection Finding (class_uid 2004) and Security Finding (2001).

Security Finding (OCSF 1.0) carries `finding` and top-level `attacks`; Detection
Finding (1.1+) carries `finding_info` (with `attacks` and `analytic`) and
`evidences`. Both are read. Other OCSF classes are recognised as OCSF so that
they dead-letter with a reason naming the class rather than "unrecognised".

Each `evidences[]` artifact is read like the finding itself (endpoints, actor,
process, file, url, query, resources) plus its `email` (senders and recipients)
and `user`. A url also yields its host as a domain entity, so reputation and
blocking work on the host. Top-level `observables` come last: the evidence that
names an observable carries richer attributes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from soc_agent.errors import NormalizationError
from soc_agent.ingest._fields import (
    MAX_ENTITIES,
    AlertDraft,
    EntitySet,
    as_list,
    get,
    looks_like_ip,
    opt_number,
    opt_str,
    parse_time,
    severity_from_word,
)
from soc_agent.models import Alert, EntityType, Severity

__all__ = ["FORMAT", "SUPPORTED_CLASSES", "matches", "normalize"]

FORMAT = "ocsf"
SUPPORTED_CLASSES = {2001: "Security Finding", 2004: "Detection Finding"}

_SEVERITY_IDS = {
    1: Severity.INFORMATIONAL,
    2: Severity.LOW,
    3: Severity.MEDIUM,
    4: Severity.HIGH,
    5: Severity.CRITICAL,
    6: Severity.CRITICAL,  # Fatal
}
# observable.type_id -> entity type (OCSF dictionary types).
_OBSERVABLE_TYPES = {
    1: EntityType.HOST,
    2: EntityType.IP,
    4: EntityType.USER,
    5: EntityType.EMAIL,
    6: EntityType.URL,
    8: EntityType.FILE_HASH,
    9: EntityType.PROCESS,
    10: EntityType.CLOUD_RESOURCE,
}
_ROLE_BY_PREFIX = {
    "src_endpoint": "source",
    "dst_endpoint": "destination",
    "actor": "actor",
    "device": None,
    "resources": "target",
}
# OCSF email object fields holding addresses -> entity role.
_EMAIL_ROLES = {
    "from": "sender",
    "smtp_from": "sender",
    "reply_to": "reply_to",
    "to": "recipient",
    "cc": "recipient",
    "smtp_to": "recipient",
    "delivered_to": "recipient",
}
_MAX_EVIDENCES = 64


def matches(doc: dict[str, Any]) -> bool:
    class_uid = doc.get("class_uid")
    if not isinstance(class_uid, int) or isinstance(class_uid, bool):
        return False
    metadata = doc.get("metadata")
    return isinstance(metadata, dict) and ("product" in metadata or "version" in metadata)


def _class_uid(doc: dict[str, Any]) -> int:
    value = doc.get("class_uid")
    if not isinstance(value, int) or isinstance(value, bool):
        raise NormalizationError(
            f"field 'class_uid' must be an integer, got {type(value).__name__}", format=FORMAT
        )
    if value not in SUPPORTED_CLASSES:
        name = doc.get("class_name")
        named = f" ({name})" if isinstance(name, str) else ""
        raise NormalizationError(
            f"unsupported OCSF class_uid {value}{named}: only 2004 Detection Finding and "
            "2001 Security Finding are alerts",
            format=FORMAT,
        )
    return value


def normalize(
    doc: dict[str, Any], *, received_at: datetime | None = None, max_entities: int = MAX_ENTITIES
) -> Alert:
    f = FORMAT
    class_uid = _class_uid(doc)
    info_key = "finding_info" if isinstance(doc.get("finding_info"), dict) else "finding"
    draft = AlertDraft(
        format=f,
        vendor=opt_str(doc, "metadata.product.vendor_name", f) or "unknown",
        product=opt_str(doc, "metadata.product.name", f) or "unknown",
        original=doc,
        max_entities=max_entities,
    )
    draft.vendor_id = opt_str(doc, f"{info_key}.uid", f) or opt_str(doc, "metadata.uid", f)
    if draft.vendor_id is None:
        raise NormalizationError(f"missing required field '{info_key}.uid'", format=f)
    draft.title = opt_str(doc, f"{info_key}.title", f)
    draft.description = opt_str(doc, f"{info_key}.desc", f) or opt_str(doc, "message", f)
    draft.rule_id = opt_str(doc, f"{info_key}.analytic.uid", f)
    draft.rule_name = opt_str(doc, f"{info_key}.analytic.name", f) or draft.title

    severity_id = opt_number(doc, "severity_id", f)
    draft.severity = _SEVERITY_IDS.get(int(severity_id)) if severity_id is not None else None
    if draft.severity is None:
        # 0 Unknown / 99 Other: fall back to the caption, then MEDIUM (never hide an alert).
        draft.severity = severity_from_word(opt_str(doc, "severity", f)) or Severity.MEDIUM
        draft.label("severity_raw", opt_str(doc, "severity", f) or severity_id)
    draft.risk_score = opt_number(doc, "risk_score", f)

    for path in ("time", f"{info_key}.created_time"):
        value = get(doc, path)
        if value is not None:
            draft.created_at = parse_time(value, unit="epoch_ms", fmt=f, path=path)
            break
    if draft.created_at is None and get(doc, "time_dt") is not None:
        draft.created_at = parse_time(get(doc, "time_dt"), unit="iso", fmt=f, path="time_dt")

    for attack in as_list(doc.get("attacks")) + as_list(get(doc, f"{info_key}.attacks")):
        if not isinstance(attack, dict):
            continue
        draft.techniques += [get(attack, "technique.uid"), get(attack, "sub_technique.uid")]
        draft.tactic(get(attack, "tactic.name") or get(attack, "tactic.uid"))
        for tactic in as_list(attack.get("tactics")):
            if isinstance(tactic, dict):
                draft.tactic(tactic.get("name") or tactic.get("uid"))

    _entities(draft.entities, doc)
    evidences = as_list(doc.get("evidences"))
    # Reading one evidence costs as much as a small alert: past the cap they are counted.
    draft.entities.unread("ocsf_evidence", len(evidences) - _MAX_EVIDENCES)
    for evidence in evidences[:_MAX_EVIDENCES]:
        if isinstance(evidence, dict):
            _entities(draft.entities, evidence)
            _email(draft.entities, evidence.get("email"))
            _user(draft.entities, evidence.get("user"), None)
    _observables(draft.entities, doc)

    draft.label("class_uid", class_uid)
    draft.label("class_name", opt_str(doc, "class_name", f))
    draft.label("ocsf_version", opt_str(doc, "metadata.version", f))
    draft.label("status", opt_str(doc, "status", f))
    draft.label("cloud.provider", opt_str(doc, "cloud.provider", f))
    draft.label("cloud.region", opt_str(doc, "cloud.region", f))
    draft.label("cloud.account", opt_str(doc, "cloud.account.uid", f))
    draft.label("finding_types", [t for t in as_list(get(doc, f"{info_key}.types")) if t])
    return draft.build(received_at)


def _endpoint(ents: EntitySet, endpoint: Any, role: str | None) -> None:
    if not isinstance(endpoint, dict):
        return
    ents.add(EntityType.IP, endpoint.get("ip"), role)
    ents.add_host(
        endpoint.get("hostname") or endpoint.get("name"),
        role,
        ids={"ocsf_device_uid": endpoint.get("uid")},
    )
    ents.add(EntityType.DOMAIN, endpoint.get("domain"), role)
    ents.add(EntityType.CLOUD_RESOURCE, endpoint.get("instance_uid"), role)


def _user(ents: EntitySet, user: Any, role: str | None) -> None:
    if isinstance(user, dict):
        uid = user.get("uid")
        ents.add_user(
            role,
            account=user.get("name") or uid,
            domain=user.get("domain"),
            email=user.get("email_addr"),
            sid=uid,
            attributes={"uid": uid},
        )
        ents.add(EntityType.EMAIL, user.get("email_addr"), role)


def _process(ents: EntitySet, process: Any, role: str | None) -> None:
    if not isinstance(process, dict):
        return
    ents.add(
        EntityType.PROCESS,
        process.get("name") or get(process, "file.name"),
        role,
        pid=process.get("pid"),
        command_line=process.get("cmd_line"),
        path=get(process, "file.path"),
    )
    _file(ents, process.get("file"), role)
    _user(ents, process.get("user"), role)
    parent = process.get("parent_process")
    if isinstance(parent, dict):
        ents.add(
            EntityType.PROCESS,
            parent.get("name") or get(parent, "file.name"),
            "parent",
            pid=parent.get("pid"),
            command_line=parent.get("cmd_line"),
            path=get(parent, "file.path"),
        )


def _file(ents: EntitySet, file: Any, role: str | None) -> None:
    if not isinstance(file, dict):
        return
    for digest in as_list(file.get("hashes")):
        if isinstance(digest, dict):
            ents.add(
                EntityType.FILE_HASH,
                digest.get("value"),
                role,
                algorithm=digest.get("algorithm"),
                file_name=file.get("name"),
                path=file.get("path"),
            )


def _url_host(ents: EntitySet, url: Any, hostname: Any, role: str | None) -> None:
    """The host of a url as a domain (or an IP), from `hostname` or parsed from the url."""
    host = hostname if isinstance(hostname, str) and hostname.strip() else None
    if host is None and isinstance(url, str) and "://" in url:
        try:
            host = urlsplit(url.strip()).hostname
        except ValueError:  # a malformed url (bad port, bracket) still is a url entity
            host = None
    if host:
        kind = EntityType.IP if looks_like_ip(host) else EntityType.DOMAIN
        ents.add(kind, host, role)


def _url(ents: EntitySet, url: Any, role: str | None) -> None:
    if not isinstance(url, dict):
        return
    ents.add(EntityType.URL, url.get("url_string"), role)
    _url_host(ents, url.get("url_string"), url.get("hostname"), role)


def _email(ents: EntitySet, email: Any) -> None:
    if not isinstance(email, dict):
        return
    message = {
        "subject": email.get("subject"),
        "email_uid": email.get("uid"),
        "message_uid": email.get("message_uid"),
    }
    for field, role in _EMAIL_ROLES.items():
        ents.add(EntityType.EMAIL, email.get(field), role, **message)
    ents.add(EntityType.IP, email.get("x_originating_ip"), "source")


def _observable_role(name: Any) -> str | None:
    """Role of an observable from its path: `evidences[0].email.from` is the sender."""
    if not isinstance(name, str):
        return None
    parts = [part.split("[", 1)[0] for part in name.split(".")]
    if parts[0] == "evidences":
        parts = parts[1:]
    if len(parts) >= 2 and parts[0] == "email":
        return _EMAIL_ROLES.get(parts[1])
    return _ROLE_BY_PREFIX.get(parts[0]) if parts else None


def _observables(ents: EntitySet, doc: dict[str, Any]) -> None:
    for observable in as_list(doc.get("observables")):
        if not isinstance(observable, dict):
            continue
        type_id = observable.get("type_id")
        kind = _OBSERVABLE_TYPES.get(type_id) if isinstance(type_id, int) else None
        if kind is None:
            continue
        name, value = observable.get("name"), observable.get("value")
        role = _observable_role(name)
        ents.add(kind, value, role, observable=name)
        if kind is EntityType.URL:
            _url_host(ents, value, None, role)


def _entities(ents: EntitySet, doc: dict[str, Any]) -> None:
    _endpoint(ents, doc.get("device"), None)
    _endpoint(ents, doc.get("src_endpoint"), "source")
    _endpoint(ents, doc.get("dst_endpoint"), "destination")
    actor = doc.get("actor")
    if isinstance(actor, dict):
        _user(ents, actor.get("user"), "actor")
        _process(ents, actor.get("process"), "actor")
    _process(ents, doc.get("process"), None)
    _file(ents, doc.get("file"), None)
    _url(ents, doc.get("url"), None)
    ents.add(EntityType.DOMAIN, get(doc, "query.hostname"), "destination")
    for resource in as_list(doc.get("resources")):
        if isinstance(resource, dict):
            ents.add(
                EntityType.CLOUD_RESOURCE,
                resource.get("uid") or resource.get("name"),
                "target",
                resource_type=resource.get("type"),
                region=resource.get("region"),
                name=resource.get("name"),
            )
