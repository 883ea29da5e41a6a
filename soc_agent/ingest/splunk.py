"""Splunk Enterprise Security notable events.

Accepted shapes: the bare notable (as `| search `notable`` returns it), the
webhook alert action payload (`{"sid", "search_name", "results_link", "result":
{...}}`) and a REST export line (`{"preview": false, "result": {...}}`). Splunk
values are strings or, for multi-value fields, lists of strings. `annotations`
may be a JSON string, an object, or flattened `annotations.mitre_attack...` keys.
`urgency` wins over `severity`, because urgency is what ES analysts triage by.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

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

FORMAT = "splunk"
_NOTABLE_KEYS = ("urgency", "security_domain", "orig_sid", "rule_name", "rule_title")
_TOKEN = re.compile(r"\$([A-Za-z_][A-Za-z0-9_.]*)\$")


def _result(doc: dict[str, Any]) -> dict[str, Any]:
    result = doc.get("result")
    return result if isinstance(result, dict) else doc


def matches(doc: dict[str, Any]) -> bool:
    result = _result(doc)
    if result is not doc and ("sid" in doc or "results_link" in doc or "search_name" in doc):
        return True
    return any(k in result for k in _NOTABLE_KEYS) and ("event_id" in result or "_time" in result)


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def _text(result: dict[str, Any], key: str) -> str | None:
    value = _first(result.get(key))
    if value is None:
        return None
    return opt_str({key: value}, key, FORMAT)


def normalize(
    doc: dict[str, Any], *, received_at: datetime | None = None, max_entities: int = MAX_ENTITIES
) -> Alert:
    f = FORMAT
    r = _result(doc)
    draft = AlertDraft(
        format=f,
        vendor="Splunk",
        product="Enterprise Security",
        original=doc,
        max_entities=max_entities,
    )
    draft.vendor_id = _text(r, "event_id")
    search_name = _text(r, "search_name") or _text(doc, "search_name")
    draft.rule_name = _text(r, "rule_name") or search_name
    draft.rule_id = search_name or _text(r, "savedsearch_name")
    title = _text(r, "rule_title") or draft.rule_name
    draft.title = _substitute(title, r) if title else None
    description = _text(r, "rule_description") or _text(r, "description")
    draft.description = _substitute(description, r) if description else None

    urgency, severity = _text(r, "urgency"), _text(r, "severity")
    draft.severity = severity_from_word(urgency) or severity_from_word(severity)
    if draft.severity is None:
        draft.severity = Severity.MEDIUM
        draft.label("severity_raw", urgency or severity or "missing")
    score = opt_number({"risk_score": _first(r.get("risk_score"))}, "risk_score", f)
    draft.risk_score = score

    if r.get("_time") is not None:
        draft.created_at = parse_time(_first(r.get("_time")), unit="auto", fmt=f, path="_time")
    _annotations(draft, r)
    _entities(draft, r)

    for key in ("security_domain", "orig_sid", "orig_rid", "status", "owner", "rule_id"):
        draft.label(key, _text(r, key))
    for key in ("sid", "app", "results_link"):
        draft.label(key, _text(doc, key))
    return draft.build(received_at)


def _substitute(text: str, result: dict[str, Any]) -> str:
    """Fill `$field$` tokens the way ES renders a rule title for Incident Review."""

    def repl(match: re.Match[str]) -> str:
        value = _first(result.get(match.group(1)))
        return str(value) if isinstance(value, str | int | float) else match.group(0)

    return _TOKEN.sub(repl, text)


def _annotations(draft: AlertDraft, r: dict[str, Any]) -> None:
    annotations = r.get("annotations")
    if isinstance(annotations, str):
        try:
            annotations = json.loads(annotations)
        except (ValueError, RecursionError):
            annotations = None
    scope: dict[str, Any] = {"annotations": annotations} if isinstance(annotations, dict) else {}
    for source in (r, scope):
        for path in ("annotations.mitre_attack.mitre_technique_id", "annotations.mitre_attack"):
            for value in as_list(get(source, path)):
                if isinstance(value, str):
                    draft.techniques.append(value)
        for path in (
            "annotations.mitre_attack.mitre_tactic",
            "annotations.mitre_attack.mitre_tactic_id",
        ):
            for value in as_list(get(source, path)):
                draft.tactic(value)


def _entities(draft: AlertDraft, r: dict[str, Any]) -> None:
    ents = draft.entities
    ents.add_ip_or_host(r.get("src"), "source")
    ents.add_ip_or_host(r.get("dest"), "destination")
    ents.add(EntityType.IP, r.get("src_ip"), "source")
    ents.add(EntityType.IP, r.get("dest_ip"), "destination")
    ents.add_host(r.get("src_host"), "source")
    ents.add_host(r.get("dest_host"), "destination")
    ents.add_ip_or_host(r.get("dvc"))
    # CIM: `*_nt_host` is the Windows (NetBIOS) name of the endpoint, `orig_host` the host
    # that logged the event the correlation search fired on.
    ents.add_host(r.get("src_nt_host"), "source", domain=_first(r.get("src_nt_domain")))
    ents.add_host(r.get("dest_nt_host"), "destination", domain=_first(r.get("dest_nt_domain")))
    ents.add_ip_or_host(r.get("orig_host"))
    for field, role in (("user", None), ("src_user", "source"), ("dest_user", "destination")):
        for name in as_list(r.get(field)):
            ents.add_user(role, account=name)
    ents.add(EntityType.FILE_HASH, r.get("file_hash"), file_name=_first(r.get("file_name")))
    ents.add(EntityType.URL, r.get("url"))
    ents.add(EntityType.DOMAIN, r.get("query"), "destination")
    ents.add(EntityType.EMAIL, r.get("sender"), "sender")
    ents.add(EntityType.EMAIL, r.get("src_user_email"), "source")
    ents.add(EntityType.EMAIL, r.get("recipient"), "recipient")
    ents.add(
        EntityType.PROCESS,
        r.get("process_name"),
        command_line=_first(r.get("process")),
        pid=_first(r.get("process_id")),
    )
