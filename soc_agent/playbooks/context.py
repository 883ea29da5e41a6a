"""What CEL expressions and templates see: the alert, the incident and the steps so far.

`build_context` is the one shape every expression is evaluated against, in the
runner (`steps.<id>` grows as steps finish), in scoring and in the respond rules.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from soc_agent.by_identity import ByIdentity
from soc_agent.models import Alert, Entity, Evidence, EvidenceStatus, Incident, Investigation
from soc_agent.models.assessment import Assessment

__all__ = [
    "CONTEXT_MAX_ALERT_IDS",
    "CONTEXT_MAX_ENTITIES",
    "agent_context",
    "alert_context",
    "build_context",
    "incident_context",
    "step_context",
]

# An incident in an alert storm holds hundreds of alerts and entities; expressions see
# the counts in full but only a bounded slice of the lists, so every evaluation stays cheap.
CONTEXT_MAX_ALERT_IDS = 50
CONTEXT_MAX_ENTITIES = 200


# Selecting a playbook, running its steps, scoring and the risk rules all read the same
# alert and incident; one shared dict lets the CEL layer convert it once per decision
# instead of once per stage (`expressions._base` caches by dict identity).
alert_context = ByIdentity(Alert.context)
"""`Alert.context()`, built once per alert object."""


def _incident_context(incident: Incident) -> dict[str, Any]:
    """The incident as expressions see it (`incident.alert_count`, `incident.entities`, ...).

    `alert_ids` holds the latest 50 and `entities` the first 200; `alert_count` and
    `entity_count` are exact.
    """
    return {
        "id": incident.id,
        "title": incident.title,
        "status": incident.status,
        "alert_ids": incident.alert_ids[-CONTEXT_MAX_ALERT_IDS:],
        "alert_count": len(incident.alert_ids),
        "entity_count": len(incident.entities),
        "severity": incident.severity.value,
        "severity_score": incident.severity.score,
        "duplicate_count": incident.duplicate_count,
        "entities": _entity_views(incident),
        "first_seen": incident.first_seen.isoformat(),
        "last_seen": incident.last_seen.isoformat(),
    }


# An incident's next version shares its entity objects (an alert joining it appends
# entities, and replaces one only when it adds a name to it), so the views of the last
# version seen are reused for every leading entity that is the very same object.
_VIEWS_HELD = 256
_views: OrderedDict[str, tuple[list[Entity], list[dict[str, str]]]] = OrderedDict()
_views_lock = threading.Lock()


def _entity_views(incident: Incident) -> list[dict[str, str]]:
    shown = incident.entities[:CONTEXT_MAX_ENTITIES]
    with _views_lock:
        entities, views = _views.get(incident.id, ([], []))
    same = 0
    for old, new in zip(entities, shown, strict=False):
        if old is not new:
            break
        same += 1
    if same == len(shown) == len(entities):
        return views
    views = views[:same] + [{"type": e.type.value, "value": e.value} for e in shown[same:]]
    with _views_lock:
        _views[incident.id] = (shown, views)
        _views.move_to_end(incident.id)
        while len(_views) > _VIEWS_HELD:
            _views.popitem(last=False)
    return views


incident_context = ByIdentity(_incident_context)
"""The incident as expressions see it, built once per incident object."""


def step_context(evidence: Evidence) -> dict[str, Any]:
    """`steps.<id>` for expressions: status, ok, result, error and overflow of one step."""
    return {
        "status": evidence.status.value,
        "ok": evidence.status is EvidenceStatus.OK,
        "result": evidence.result,
        "error": evidence.error,
        "overflow": evidence.overflow,
    }


def build_context(
    alert: Alert,
    incident: Incident,
    investigation: Investigation | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The context scoring and respond rules are evaluated in.

    `agent` is there only when the reasoning investigator answered: a rule that
    reads it after a run that escalated (or never ran) cannot be evaluated, and
    the policy escalates what it might have decided.
    """
    steps = {e.step: step_context(e) for e in investigation.evidence} if investigation else {}
    ctx = {
        "alert": alert_context(alert),
        "incident": incident_context(incident),
        "steps": steps,
        "settings": settings or {},
    }
    report = investigation.model_run if investigation else None
    if report is not None and report.assessment is not None:
        ctx["agent"] = agent_context(report.assessment, injection=bool(report.injection))
    return ctx


def agent_context(assessment: Assessment, *, injection: bool) -> dict[str, Any]:
    """`agent.*` for expressions: the model's verdict, confidence and what it found."""
    return {
        "verdict": assessment.verdict.value,
        "confidence": assessment.confidence,
        "findings": [f.statement for f in assessment.findings],
        "recommended_actions": list(assessment.recommended_actions),
        "open_questions": list(assessment.open_questions),
        "injection": injection,
    }


# --- the runner -----------------------------------------------------------------------
