"""Read-side views over the store and audit log: what the API returns and the UI renders.

Queries go through the store's public methods. Where the store has no filter
(actions by status, proposals or decisions by incident) the view scans a
bounded window (`SCAN_LIMIT` rows) and filters in memory; see `Store` for the
indexed queries that would replace it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from soc_agent.api.context import ApiContext
from soc_agent.api.errors import NotFound
from soc_agent.api.identity import Principal
from soc_agent.api.operations import decide_role
from soc_agent.models import AuditEvent, Decision, Proposal, ProposalStatus
from soc_agent.store.base import ActionRecord

__all__ = [
    "MAX_OFFSET",
    "SCAN_LIMIT",
    "Page",
    "action_json",
    "actions_page",
    "audit_json",
    "decision_json",
    "incident_detail",
    "proposal_detail",
    "proposal_json",
]

# Paging past this is refused (422) rather than sent to a database that would overflow.
MAX_OFFSET = 1_000_000

SCAN_LIMIT = 10_000


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    limit: int
    offset: int

    def json(self) -> dict[str, Any]:
        full = len(self.items) == self.limit
        return {
            "items": self.items,
            "limit": self.limit,
            "offset": self.offset,
            "next_offset": self.offset + self.limit if full else None,
        }


def proposal_json(proposal: Proposal, now: datetime) -> dict[str, Any]:
    """A proposal as stored, plus what an analyst needs at a glance."""
    data = proposal.model_dump(mode="json")
    approvers = proposal.approvers
    data["approvers"] = approvers
    data["approvals_needed"] = max(0, proposal.request.required_approvals - len(approvers))
    data["overdue"] = proposal.status is ProposalStatus.PENDING and now >= proposal.expires_at
    return data


def decision_json(decision: Decision) -> dict[str, Any]:
    data = decision.model_dump(mode="json")
    data["score_total"] = sum(b.points for b in decision.breakdown if b.evaluated)
    return data


def action_json(record: ActionRecord) -> dict[str, Any]:
    return {
        "id": record.action_id,
        "idempotency_key": record.idempotency_key,
        "incident_id": record.incident_id,
        "action": record.action,
        "target": record.target,
        "connector": record.connector,
        "capability": record.capability,
        "status": record.status,
        "reversible": record.request.reversible,
        "rollback_capability": record.request.rollback_capability,
        "risk": record.request.risk.value,
        "rule": record.request.rule,
        "result": record.result,
        "error": record.error,
        "claimed_at": record.claimed_at.isoformat(),
        "executed_at": record.executed_at.isoformat() if record.executed_at else None,
        "revert_at": record.revert_at.isoformat() if record.revert_at else None,
        "attempts": record.attempts,
    }


def audit_json(event: AuditEvent) -> dict[str, Any]:
    return event.model_dump(mode="json")


async def actions_page(
    ctx: ApiContext, *, status: str | None, incident_id: str | None, limit: int, offset: int
) -> list[ActionRecord]:
    store = ctx.components.store
    if status is None and incident_id is None:
        return await store.list_actions(limit=limit, offset=offset)
    rows = [
        r
        for r in await store.list_actions(limit=SCAN_LIMIT)
        if (status is None or r.status == status)
        and (incident_id is None or r.incident_id == incident_id)
    ]
    return rows[offset : offset + limit]


async def proposals_of(ctx: ApiContext, incident_id: str) -> list[Proposal]:
    rows = await ctx.components.store.list_proposals(limit=SCAN_LIMIT)
    return [p for p in rows if p.incident_id == incident_id]


async def proposal_detail(
    ctx: ApiContext, proposal: Proposal, principal: Principal
) -> dict[str, Any]:
    """The proposal with everything behind it: alerts, evidence, score, rules, audit trail."""
    store, audit = ctx.components.store, ctx.components.audit
    decision = await store.get_decision(proposal.decision_id)
    investigation = (
        await store.get_investigation(decision.investigation_id)
        if decision and decision.investigation_id
        else None
    )
    incident = await store.get_incident(proposal.incident_id)
    alert_ids = decision.alert_ids if decision else (incident.alert_ids if incident else [])
    alerts = [a for a in [await store.get_alert(i) for i in alert_ids] if a is not None]
    action = await store.get_action(proposal.request.idempotency_key)
    role = decide_role(ctx, proposal.request.risk)
    open_ = proposal.status in (ProposalStatus.PENDING, ProposalStatus.REVIEW)
    return {
        "proposal": proposal_json(proposal, ctx.now()),
        "decision": decision_json(decision) if decision else None,
        "investigation": investigation.model_dump(mode="json") if investigation else None,
        "incident": incident.model_dump(mode="json") if incident else None,
        "alerts": [a.model_dump(mode="json") for a in alerts],
        "action": action_json(action) if action else None,
        "audit": [audit_json(e) for e in await audit.list(subject=proposal.id, limit=500)],
        "authorisation": {
            "required_role": role.value,
            "may_decide": open_ and principal.may(role),
        },
    }


async def incident_detail(ctx: ApiContext, incident_id: str) -> dict[str, Any]:
    """An incident, its alerts, decision, proposals, actions and a merged audit timeline."""
    store, audit = ctx.components.store, ctx.components.audit
    incident = await store.get_incident(incident_id)
    if incident is None:
        raise NotFound(f"no incident with id {incident_id!r}")
    alerts = await store.alerts_of(incident_id)
    latest = await store.latest_decision(incident_id)
    investigation = (
        await store.get_investigation(latest.investigation_id)
        if latest and latest.investigation_id
        else None
    )
    proposals = await proposals_of(ctx, incident_id)
    verdict = await store.incident_verdict(incident_id)
    labels = await store.action_labels(incident_id)
    actions = await actions_page(
        ctx, status=None, incident_id=incident_id, limit=SCAN_LIMIT, offset=0
    )
    decision_ids = {p.decision_id for p in proposals} | ({latest.id} if latest else set())
    subjects = (
        [incident_id]
        + [a.id for a in alerts]
        + sorted(decision_ids)
        + [p.id for p in proposals]
        + [r.action_id for r in actions]
    )
    events: dict[int, AuditEvent] = {}
    for subject in subjects:
        for event in await audit.list(subject=subject, limit=500):
            if event.seq is not None:
                events[event.seq] = event
    return {
        "incident": incident.model_dump(mode="json"),
        "alerts": [a.model_dump(mode="json", exclude={"original"}) for a in alerts],
        "latest_decision": decision_json(latest) if latest else None,
        "investigation": investigation.model_dump(mode="json") if investigation else None,
        "proposals": [proposal_json(p, ctx.now()) for p in proposals],
        "actions": [action_json(r) for r in actions],
        "timeline": [audit_json(events[s]) for s in sorted(events)],
        "verdict": verdict.model_dump(mode="json") if verdict else None,
        "action_labels": [label.model_dump(mode="json") for label in labels],
    }
