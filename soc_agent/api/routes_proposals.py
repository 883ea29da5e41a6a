"""`/api/v1/proposals`: the analyst queue, one proposal with its evidence, approve, reject."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel, Field

from soc_agent.api.auth import require
from soc_agent.api.context import get_context
from soc_agent.api.identity import Principal
from soc_agent.api.operations import decide, load_proposal
from soc_agent.api.views import MAX_OFFSET, Page, proposal_detail, proposal_json
from soc_agent.models import ProposalStatus, Role

__all__ = ["DecisionBody", "Limit", "Offset", "clamp", "router"]

router = APIRouter(prefix="/api/v1", tags=["proposals"])

Limit = Annotated[int, Query(ge=1, le=1000, description="page size (capped by api.max_page_size)")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Analyst = Annotated[Principal, Depends(require(Role.ANALYST))]


def clamp(request: Request, limit: int) -> int:
    return min(limit, get_context(request).config.max_page_size)


class DecisionBody(BaseModel):
    comment: str | None = Field(default=None, max_length=2000)


@router.get("/proposals", summary="The queue, most urgent first")
async def list_proposals(
    request: Request,
    _: Viewer,
    status: Annotated[ProposalStatus | None, Query(description="default: every status")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict[str, Any]:
    ctx = get_context(request)
    limit = clamp(request, limit)
    rows = await ctx.components.store.list_proposals(status=status, limit=limit, offset=offset)
    return Page([proposal_json(p, ctx.now()) for p in rows], limit, offset).json()


@router.get("/proposals/{proposal_id}", summary="A proposal with its alert, evidence and score")
async def get_proposal(request: Request, proposal_id: str, principal: Viewer) -> dict[str, Any]:
    ctx = get_context(request)
    return await proposal_detail(ctx, await load_proposal(ctx, proposal_id), principal)


async def _decide(
    request: Request, proposal_id: str, principal: Principal, body: DecisionBody | None, ok: bool
) -> dict[str, Any]:
    ctx = get_context(request)
    outcome = await decide(
        ctx, principal, proposal_id, approve=ok, comment=body.comment if body else None
    )
    return {"message": outcome.message, "proposal": proposal_json(outcome.proposal, ctx.now())}


@router.post(
    "/proposals/{proposal_id}/approve",
    summary="Approve; executes once enough distinct analysts approved",
    responses={403: {"description": "role may not"}, 409: {"description": "not pending"}},
)
async def approve(
    request: Request,
    proposal_id: str,
    principal: Analyst,
    body: Annotated[DecisionBody | None, Body()] = None,
) -> dict[str, Any]:
    return await _decide(request, proposal_id, principal, body, True)


@router.post(
    "/proposals/{proposal_id}/reject",
    summary="Reject; nothing is executed (a review item is rolled back)",
    responses={403: {"description": "role may not"}, 409: {"description": "not pending"}},
)
async def reject(
    request: Request,
    proposal_id: str,
    principal: Analyst,
    body: Annotated[DecisionBody | None, Body()] = None,
) -> dict[str, Any]:
    return await _decide(request, proposal_id, principal, body, False)
