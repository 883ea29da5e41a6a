"""Records: incidents, alerts, investigations, decisions, actions, audit; closing an
incident with a verdict and rolling an action back."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel, Field

from soc_agent.api.auth import require
from soc_agent.api.context import get_context
from soc_agent.api.errors import NotFound
from soc_agent.api.identity import Principal
from soc_agent.api.operations import close, rollback
from soc_agent.api.routes_proposals import DecisionBody, Limit, Offset, clamp
from soc_agent.api.views import (
    Page,
    action_json,
    actions_page,
    audit_json,
    decision_json,
    incident_detail,
)
from soc_agent.models import Role, Verdict

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")

Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Analyst = Annotated[Principal, Depends(require(Role.ANALYST))]


@router.get("/incidents", tags=["incidents"], summary="Incidents, most recent activity first")
async def list_incidents(
    request: Request, _: Viewer, limit: Limit = 50, offset: Offset = 0
) -> dict[str, Any]:
    ctx = get_context(request)
    limit = clamp(request, limit)
    rows = await ctx.components.store.list_incidents(limit=limit, offset=offset)
    return Page([i.model_dump(mode="json") for i in rows], limit, offset).json()


@router.get("/incidents/{incident_id}", tags=["incidents"], summary="Incident with its timeline")
async def get_incident(request: Request, incident_id: str, _: Viewer) -> dict[str, Any]:
    return await incident_detail(get_context(request), incident_id)


class CloseBody(BaseModel):
    verdict: Verdict
    reason: str = Field(min_length=1, max_length=2000)


@router.post(
    "/incidents/{incident_id}/close",
    tags=["incidents"],
    summary="Close with a verdict (true_positive, benign_true_positive, false_positive)",
    responses={403: {"description": "role may not"}, 404: {"description": "no such incident"}},
)
async def close_incident(
    request: Request, incident_id: str, principal: Analyst, body: CloseBody
) -> dict[str, Any]:
    record = await close(get_context(request), principal, incident_id, body.verdict, body.reason)
    return {
        "message": f"closed as {record.verdict.value}",
        "verdict": record.model_dump(mode="json"),
    }


@router.get("/incidents/{incident_id}/alerts", tags=["alerts"], summary="Alerts of an incident")
async def incident_alerts(request: Request, incident_id: str, _: Viewer) -> dict[str, Any]:
    store = get_context(request).components.store
    if await store.get_incident(incident_id) is None:
        raise NotFound(f"no incident with id {incident_id!r}")
    alerts = await store.alerts_of(incident_id)
    return {"items": [a.model_dump(mode="json") for a in alerts]}


@router.get("/alerts/{alert_id}", tags=["alerts"], summary="One canonical alert")
async def get_alert(request: Request, alert_id: str, _: Viewer) -> dict[str, Any]:
    alert = await get_context(request).components.store.get_alert(alert_id)
    if alert is None:
        raise NotFound(f"no alert with id {alert_id!r}")
    return alert.model_dump(mode="json")


@router.get(
    "/investigations/{investigation_id}",
    tags=["investigations"],
    summary="An investigation with every evidence record",
)
async def get_investigation(request: Request, investigation_id: str, _: Viewer) -> dict[str, Any]:
    found = await get_context(request).components.store.get_investigation(investigation_id)
    if found is None:
        raise NotFound(f"no investigation with id {investigation_id!r}")
    return found.model_dump(mode="json")


@router.get("/decisions", tags=["decisions"], summary="Decisions in the order they were made")
async def list_decisions(
    request: Request, _: Viewer, limit: Limit = 50, offset: Offset = 0
) -> dict[str, Any]:
    ctx = get_context(request)
    limit = clamp(request, limit)
    rows = await ctx.components.store.list_decisions(limit=limit, offset=offset)
    return Page([decision_json(d) for d in rows], limit, offset).json()


@router.get("/decisions/{decision_id}", tags=["decisions"], summary="Score breakdown, actions")
async def get_decision(request: Request, decision_id: str, _: Viewer) -> dict[str, Any]:
    found = await get_context(request).components.store.get_decision(decision_id)
    if found is None:
        raise NotFound(f"no decision with id {decision_id!r}")
    return decision_json(found)


@router.get("/actions", tags=["actions"], summary="The action ledger")
async def list_actions(
    request: Request,
    _: Viewer,
    status: Annotated[str | None, Query(pattern="^(claimed|executed|failed|rolled_back)$")] = None,
    incident_id: str | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict[str, Any]:
    ctx = get_context(request)
    limit = clamp(request, limit)
    rows = await actions_page(
        ctx, status=status, incident_id=incident_id, limit=limit, offset=offset
    )
    return Page([action_json(r) for r in rows], limit, offset).json()


@router.get("/actions/{action_id}", tags=["actions"], summary="One action by id or key")
async def get_action(request: Request, action_id: str, _: Viewer) -> dict[str, Any]:
    record = await get_context(request).components.store.get_action(action_id)
    if record is None:
        raise NotFound(f"no action with id or key {action_id!r}")
    return action_json(record)


@router.post(
    "/actions/{action_id}/rollback",
    tags=["actions"],
    summary="Undo an executed reversible action with its declared inverse",
    responses={409: {"description": "not executed, or not reversible"}},
)
async def rollback_action(
    request: Request,
    action_id: str,
    principal: Analyst,
    body: Annotated[DecisionBody | None, Body()] = None,
) -> dict[str, Any]:
    ctx = get_context(request)
    outcome = await rollback(ctx, principal, action_id, body.comment if body else None)
    record = await ctx.components.store.get_action(outcome.key)
    assert record is not None
    return {"message": f"rolled back: {outcome.detail}", "action": action_json(record)}


@router.get("/audit", tags=["audit"], summary="Audit events, newest first")
async def list_audit(
    request: Request,
    _: Viewer,
    subject: str | None = None,
    action: Annotated[str | None, Query(description="action prefix, e.g. proposal.")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict[str, Any]:
    ctx = get_context(request)
    limit = clamp(request, limit)
    rows = await ctx.components.audit.list(
        subject=subject, action_prefix=action, limit=limit, offset=offset, newest_first=True
    )
    return Page([audit_json(e) for e in rows], limit, offset).json()


@router.get("/audit/verify", tags=["audit"], summary="Verify the hash chain")
async def verify_audit(
    request: Request,
    _: Viewer,
    full: Annotated[bool, Query(description="re-read every entry now")] = False,
) -> dict[str, Any]:
    status = await get_context(request).chain.status(full=full)
    return status.result.summary() | {
        "full_verified_seconds_ago": round(status.full_age_seconds, 1)
    }
