"""Closing an incident with a verdict: the analyst's conclusion, kept and audited.

The record keeps the incident's detection rules and every name of every entity
as they were at closing, so later decisions can ask how this rule on this host
was judged before (`Store.verdict_history`), and calibration can measure past
decisions against what analysts concluded.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from soc_agent.audit.base import AuditSink
from soc_agent.errors import SocAgentError
from soc_agent.models import Approver, AuditEvent, IncidentVerdict, Role, Verdict
from soc_agent.store.base import Store

__all__ = [
    "CLOSE_ROLE",
    "CloseForbidden",
    "CloseRefused",
    "IncidentNotFound",
    "close_incident",
    "verdict_id",
]

MAX_REASON = 2000
CLOSE_ROLE = Role.ANALYST
"""The least role that may close an incident: a viewer reads, an analyst concludes."""


class IncidentNotFound(SocAgentError):
    """No incident with that id."""


class CloseForbidden(SocAgentError):
    """The caller's role may not close incidents."""


class CloseRefused(SocAgentError):
    """The closing itself is not acceptable (no reason, a reason too long)."""


def verdict_id(
    incident_id: str, closed_by: str, closed_at: datetime, verdict: Verdict, reason: str
) -> str:
    """`verdict-` + 24 hex digits: the same closing written twice is one record, a
    different one (even in the same instant) is another."""
    text = "\x1f".join((incident_id, closed_by, closed_at.isoformat(), verdict.value, reason))
    return "verdict-" + hashlib.sha256(text.encode()).hexdigest()[:24]


async def close_incident(
    store: Store,
    audit: AuditSink,
    *,
    incident_id: str,
    verdict: Verdict,
    reason: str,
    closed_by: Approver,
    at: datetime,
) -> IncidentVerdict:
    """Record `closed_by`'s verdict on the incident and audit it under their identity.

    Raises `CloseForbidden` for a role below `CLOSE_ROLE` and `IncidentNotFound` for an
    unknown incident; closing again records a new verdict that supersedes the last. The
    same closing delivered twice (same analyst, instant, verdict and reason) is kept and
    audited once.
    """
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON:
        raise CloseRefused(f"a verdict needs a reason of 1 to {MAX_REASON} characters")
    if not closed_by.role.includes(CLOSE_ROLE):
        raise CloseForbidden(
            f"closing an incident needs the {CLOSE_ROLE.value} role; "
            f"{closed_by.name} is a {closed_by.role.value}"
        )
    incident = await store.get_incident(incident_id)
    if incident is None:
        raise IncidentNotFound(f"no incident with id {incident_id!r}")
    record = IncidentVerdict(
        id=verdict_id(incident_id, closed_by.name, at, verdict, reason),
        incident_id=incident_id,
        verdict=verdict,
        reason=reason,
        closed_by=closed_by,
        closed_at=at,
        rules=list(incident.rules),
        entities=sorted({key for entity in incident.entities for key in entity.keys}),
        alert_ids=list(incident.alert_ids),
    )
    if not await store.save_verdict(record):
        return record  # the same closing delivered again: already kept and audited
    await audit.append(
        AuditEvent(
            actor=closed_by.name,
            action="incident.close",
            subject=incident_id,
            reason=record.reason,
            outcome=verdict.value,
            details={"verdict_id": record.id, "role": closed_by.role.value},
            at=at,
        )
    )
    return record
