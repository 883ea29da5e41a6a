"""Operator controls: who am I, the kill switch, the agent's autonomy level."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from soc_agent.api.auth import require
from soc_agent.api.context import get_context
from soc_agent.api.identity import Principal
from soc_agent.api.operations import (
    action_autonomy_state,
    autonomy_state,
    kill_switch_state,
    set_action_autonomy,
    set_autonomy,
    set_kill_switch,
)
from soc_agent.models import AutonomyLevel, Role

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["control"])

Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Analyst = Annotated[Principal, Depends(require(Role.ANALYST))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]


class KillSwitchBody(BaseModel):
    on: bool


class AutonomyBody(BaseModel):
    level: AutonomyLevel | None = Field(
        description="1 operator .. 5 observer; null restores the configured level"
    )
    reason: str | None = Field(default=None, max_length=2000)


class ActionAutonomyBody(BaseModel):
    action: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,128}$", description="the action's name")
    level: AutonomyLevel | None = Field(
        description="1 operator .. 5 observer: the most this action may do; null lifts the cap"
    )
    reason: str | None = Field(default=None, max_length=2000)


@router.get("/me", summary="The authenticated caller and what its role allows")
async def me(request: Request, principal: Viewer) -> dict[str, Any]:
    cfg = get_context(request).config
    return {
        "name": principal.name,
        "identity": principal.identity,
        "role": principal.role.value,
        "source": principal.source,
        "may_approve": [t.value for t, r in cfg.approve_roles.items() if principal.may(r)],
    }


@router.get("/kill-switch", summary="Is every execution turned into a proposal?")
async def get_kill_switch(request: Request, _: Viewer) -> dict[str, bool]:
    return await kill_switch_state(get_context(request))


@router.put(
    "/kill-switch",
    summary="Engage (api.kill_switch_on_role) or release (api.kill_switch_off_role)",
)
async def put_kill_switch(
    request: Request, body: KillSwitchBody, principal: Analyst
) -> dict[str, bool]:
    return await set_kill_switch(get_context(request), principal, body.on)


@router.get("/agent/autonomy", summary="Configured, runtime and effective autonomy level")
async def get_autonomy(request: Request, _: Viewer) -> dict[str, Any]:
    return await autonomy_state(get_context(request))


@router.put("/agent/autonomy", summary="Lower (or restore) the agent's autonomy; admin only")
async def put_autonomy(request: Request, body: AutonomyBody, principal: Admin) -> dict[str, Any]:
    return await set_autonomy(get_context(request), principal, body.level, body.reason)


@router.get(
    "/agent/action-autonomy", summary="Per-action autonomy caps: configured, runtime, effective"
)
async def get_action_autonomy(request: Request, _: Viewer) -> dict[str, Any]:
    return await action_autonomy_state(get_context(request))


@router.put(
    "/agent/action-autonomy",
    summary="Cap one action's autonomy (apply `policy suggest`); lowers only; admin only",
)
async def put_action_autonomy(
    request: Request, body: ActionAutonomyBody, principal: Admin
) -> dict[str, Any]:
    return await set_action_autonomy(
        get_context(request), principal, body.action, body.level, body.reason
    )
