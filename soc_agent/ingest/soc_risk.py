"""soc-agent's own risk alerts: an entity's risk crossed the threshold in a window.

The embedded runtime and the stream app raise them (`soc_agent.risk`). The
record only claims a total: the `risk-threshold` playbook reads the entity's
risk from the ledger itself (`risk.lookup`) before it scores, so a forged
record on the alert pipeline gains nothing. Severity follows the total against
the threshold: three times or more critical, one and a half high, else medium.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from soc_agent.errors import NormalizationError
from soc_agent.ingest._fields import (
    MAX_ENTITIES,
    AlertDraft,
    as_list,
    get,
    opt_number,
    parse_time,
    req_str,
)
from soc_agent.models import Alert, EntityType, Severity

__all__ = ["FORMAT", "matches", "normalize"]

FORMAT = "soc_risk"
_ID = re.compile(r"^risk-[0-9a-f]{24}$")
_LISTED = 10  # contributions named in the description


def matches(doc: dict[str, Any]) -> bool:
    return isinstance(doc.get(FORMAT), dict)


def _severity(total: float, threshold: float) -> Severity:
    if total >= 3 * threshold:
        return Severity.CRITICAL
    if total >= 1.5 * threshold:
        return Severity.HIGH
    return Severity.MEDIUM


def normalize(
    doc: dict[str, Any], *, received_at: datetime | None = None, max_entities: int = MAX_ENTITIES
) -> Alert:
    f = FORMAT
    record = doc.get(FORMAT)
    if not isinstance(record, dict):
        raise NormalizationError("'soc_risk' must be an object", format=f)
    if record.get("version") != 1:
        raise NormalizationError(f"unknown version {record.get('version')!r} (known: 1)", format=f)
    record_id = req_str(record, "id", f)
    if not _ID.match(record_id):
        raise NormalizationError("'id' is not a risk record id (risk-<24 hex>)", format=f)
    kind = req_str(record, "entity.type", f)
    if kind not in {t.value for t in EntityType}:
        raise NormalizationError(f"'entity.type' {kind[:32]!r} is not an entity type", format=f)
    value = req_str(record, "entity.value", f)
    total, threshold = opt_number(record, "total", f), opt_number(record, "threshold", f)
    if total is None or threshold is None or threshold <= 0:
        raise NormalizationError("'total' and a positive 'threshold' are required", format=f)

    draft = AlertDraft(
        format=f, vendor="soc-agent", product="entity-risk", original=doc, max_entities=max_entities
    )
    draft.vendor_id = record_id
    draft.rule_id, draft.rule_name = "risk.threshold", "Entity risk threshold"
    count = get(record, "alert_count")
    draft.title = f"Risk {total:g} for {kind} {value} (threshold {threshold:g}, {count} alerts)"
    draft.severity = _severity(total, threshold)
    draft.risk_score = min(100.0, round(50 * total / threshold, 1))
    draft.created_at = parse_time(get(record, "created_at"), unit="auto", fmt=f, path="created_at")
    draft.entities.add(EntityType(kind), value, "risk_subject")
    for tactic in as_list(get(record, "tactics")):
        draft.tactic(tactic)
    draft.techniques += [t for t in as_list(get(record, "techniques")) if isinstance(t, str)]
    lines = [
        f"{c.get('points')} points: {str(c.get('title'))[:200]} ({str(c.get('alert_id'))[:200]})"
        for c in as_list(get(record, "contributions"))[:_LISTED]
        if isinstance(c, dict)
    ]
    draft.description = "Highest contributions:\n" + "\n".join(lines) if lines else None
    draft.label("risk_total", f"{total:g}")
    draft.label("risk_threshold", f"{threshold:g}")
    draft.label("window_start", get(record, "window.start"))
    draft.label("window_end", get(record, "window.end"))
    draft.label("alert_count", count)
    draft.label("dropped", get(record, "dropped"))
    return draft.build(received_at)
