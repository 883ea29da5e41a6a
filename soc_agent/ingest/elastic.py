"""Elastic Security detection alerts (ECS fields plus `kibana.alert.*`).

Alert documents as stored in `.alerts-security.alerts-*` keep `kibana.alert.*` as
flattened dotted keys and the copied source event as nested ECS objects; API and
export tools may nest everything. Both work because every read goes through
`_fields.get`. A raw search hit (`{"_id": ..., "_source": {...}}`) is unwrapped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from soc_agent.errors import NormalizationError
from soc_agent.ingest._fields import (
    MAX_ENTITIES,
    AlertDraft,
    as_list,
    get,
    opt_number,
    opt_str,
    parse_time,
    severity_from_word,
)
from soc_agent.models import Alert, EntityType, Severity

__all__ = ["FORMAT", "matches", "normalize"]

FORMAT = "elastic"
_HASHES = ("sha256", "sha1", "md5", "sha512")


def _body(doc: dict[str, Any]) -> dict[str, Any]:
    source = doc.get("_source")
    return source if isinstance(source, dict) else doc


def matches(doc: dict[str, Any]) -> bool:
    body = _body(doc)
    return any(
        get(body, path) is not None
        for path in ("kibana.alert.rule.name", "kibana.alert.uuid", "kibana.alert.rule.uuid")
    )


def normalize(
    doc: dict[str, Any], *, received_at: datetime | None = None, max_entities: int = MAX_ENTITIES
) -> Alert:
    body = _body(doc)
    f = FORMAT
    draft = AlertDraft(
        format=f,
        vendor="Elastic",
        product="Elastic Security",
        original=doc,
        max_entities=max_entities,
    )
    draft.vendor_id = opt_str(body, "kibana.alert.uuid", f) or opt_str(doc, "_id", f)
    if draft.vendor_id is None:
        raise NormalizationError("missing required field 'kibana.alert.uuid'", format=f)

    draft.rule_name = opt_str(body, "kibana.alert.rule.name", f)
    draft.title = draft.rule_name
    draft.rule_id = opt_str(body, "kibana.alert.rule.uuid", f)
    draft.rule_description = opt_str(body, "kibana.alert.rule.description", f)
    draft.description = opt_str(body, "kibana.alert.reason", f) or draft.rule_description

    for path in ("kibana.alert.risk_score", "kibana.alert.rule.risk_score"):
        score = opt_number(body, path, f)
        if score is not None:
            draft.risk_score = score
            break
    word = opt_str(body, "kibana.alert.severity", f) or opt_str(
        body, "kibana.alert.rule.severity", f
    )
    draft.severity = severity_from_word(word)
    if draft.severity is None:
        if word is not None:
            raise NormalizationError(
                f"field 'kibana.alert.severity' must be low|medium|high|critical, got {word!r}",
                format=f,
            )
        draft.severity = (
            Severity.from_score(draft.risk_score) if draft.risk_score is not None else None
        )

    for path in ("@timestamp", "kibana.alert.original_time"):
        value = get(body, path)
        if value is not None:
            draft.created_at = parse_time(value, unit="auto", fmt=f, path=path)
            break

    _threat(draft, get(body, "kibana.alert.rule.threat"))
    _entities(draft, body)
    for key, path in (
        ("rule_id", "kibana.alert.rule.rule_id"),
        ("rule_type", "kibana.alert.rule.type"),
        ("workflow_status", "kibana.alert.workflow_status"),
        ("original_time", "kibana.alert.original_time"),
        ("space_ids", "kibana.space_ids"),
        ("event.module", "event.module"),
        ("event.dataset", "event.dataset"),
        ("index", "_index"),
    ):
        value = get(body if path != "_index" else doc, path)
        if not isinstance(value, dict):
            draft.label(key, value)
    return draft.build(received_at)


def _threat(draft: AlertDraft, threat: Any) -> None:
    for entry in as_list(threat):
        if not isinstance(entry, dict):
            continue
        tactic = entry.get("tactic")
        if isinstance(tactic, dict):
            draft.tactic(tactic.get("name") or tactic.get("id"))
        for tech in as_list(entry.get("technique")):
            if not isinstance(tech, dict):
                continue
            draft.techniques.append(tech.get("id"))
            for sub in as_list(tech.get("subtechnique")):
                if isinstance(sub, dict):
                    draft.techniques.append(sub.get("id"))


def _hashes(draft: AlertDraft, body: dict[str, Any], prefix: str, **attrs: Any) -> None:
    for algo in _HASHES:
        draft.entities.add(
            EntityType.FILE_HASH, get(body, f"{prefix}.hash.{algo}"), algorithm=algo, **attrs
        )


def _fqdn(hostname: Any, domain: Any) -> str | None:
    """ECS `host.hostname` qualified by `host.domain` when it is not qualified already."""
    if not isinstance(hostname, str) or not isinstance(domain, str) or "." in hostname:
        return None
    return f"{hostname}.{domain}" if "." in domain else None


def _entities(draft: AlertDraft, body: dict[str, Any]) -> None:
    ents = draft.entities
    ents.add_host(
        get(body, "host.name") or get(body, "host.hostname"),
        fqdn=_fqdn(get(body, "host.hostname"), get(body, "host.domain")),
        ids={"elastic_host_id": get(body, "host.id")},
    )
    user_id = get(body, "user.id")
    for name in as_list(get(body, "user.name")):
        ents.add_user(
            account=name,
            domain=get(body, "user.domain"),
            email=next(iter(as_list(get(body, "user.email"))), None),
            sid=user_id,
        )
    ents.add(EntityType.EMAIL, get(body, "user.email"))
    ents.add(EntityType.USER, get(body, "user.target.name"), "target")
    for side in ("source", "destination"):
        ents.add(EntityType.IP, get(body, f"{side}.ip"), side)
        ents.add(EntityType.DOMAIN, get(body, f"{side}.domain"), side)
        ents.add(EntityType.USER, get(body, f"{side}.user.name"), side)
    ents.add(EntityType.DOMAIN, get(body, "dns.question.name"), "destination")
    ents.add(EntityType.URL, get(body, "url.full") or get(body, "url.original"))
    ents.add(EntityType.EMAIL, get(body, "email.from.address"), "sender")
    ents.add(EntityType.EMAIL, get(body, "email.to.address"), "recipient")
    ents.add(EntityType.EMAIL, get(body, "email.cc.address"), "recipient")
    ents.add(
        EntityType.PROCESS,
        get(body, "process.name"),
        pid=get(body, "process.pid"),
        executable=get(body, "process.executable"),
        command_line=get(body, "process.command_line"),
        entity_id=get(body, "process.entity_id"),
    )
    ents.add(
        EntityType.PROCESS,
        get(body, "process.parent.name"),
        "parent",
        pid=get(body, "process.parent.pid"),
        command_line=get(body, "process.parent.command_line"),
    )
    _hashes(draft, body, "process", file_name=get(body, "process.name"))
    _hashes(draft, body, "file", file_name=get(body, "file.name"), path=get(body, "file.path"))
    ents.add(
        EntityType.CLOUD_RESOURCE,
        get(body, "cloud.instance.id"),
        provider=get(body, "cloud.provider"),
        account=get(body, "cloud.account.id"),
        region=get(body, "cloud.region"),
    )
