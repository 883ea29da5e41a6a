"""State changes an analyst can make, with their authorisation: used by the API and the UI.

Each checks the caller's role against configuration, then calls the core
(ProposalService, Executor, pipeline.controls), which audits with the caller's
identity. The core's own errors become 403/404/409 here.
"""

from __future__ import annotations

from typing import Any

from soc_agent.actions.executor import ExecutionOutcome
from soc_agent.api.auth import require_role
from soc_agent.api.context import ApiContext
from soc_agent.api.errors import BadRequest, Conflict, Forbidden, NotFound, UpstreamFailed
from soc_agent.api.identity import Principal
from soc_agent.errors import SocAgentError
from soc_agent.models import AutonomyLevel, IncidentVerdict, Proposal, RiskTier, Role, Verdict
from soc_agent.pipeline import controls
from soc_agent.pipeline.closing import (
    CloseForbidden,
    CloseRefused,
    IncidentNotFound,
    close_incident,
)
from soc_agent.pipeline.proposals import (
    ProposalConflict,
    ProposalForbidden,
    ProposalNotFound,
    ProposalOutcome,
)

__all__ = [
    "autonomy_state",
    "close",
    "decide",
    "decide_role",
    "kill_switch_state",
    "rollback",
    "set_autonomy",
    "set_kill_switch",
]


def decide_role(ctx: ApiContext, risk: RiskTier) -> Role:
    """The least role that may approve, reject or roll back an action of this risk."""
    return ctx.components.proposals.required_role(risk)


async def load_proposal(ctx: ApiContext, proposal_id: str) -> Proposal:
    proposal = await ctx.components.store.get_proposal(proposal_id)
    if proposal is None:
        raise NotFound(f"no proposal with id {proposal_id!r}")
    return proposal


async def decide(
    ctx: ApiContext, principal: Principal, proposal_id: str, *, approve: bool, comment: str | None
) -> ProposalOutcome:
    """Approve or reject as the authenticated `principal`; the ProposalService applies every
    rule (the role for the risk tier, the agent's own identity, four-eyes, expiry)."""
    approver = principal.approver
    service = ctx.components.proposals
    try:
        if approve:
            outcome = await service.approve(proposal_id, approver, comment)
        else:
            outcome = await service.reject(proposal_id, approver, comment)
    except ProposalForbidden as exc:
        raise Forbidden(str(exc)) from None
    except ProposalNotFound as exc:
        raise NotFound(str(exc)) from None
    except ProposalConflict as exc:
        raise Conflict(str(exc)) from None
    if ctx.verdicts is not None:
        await ctx.verdicts.publish(approver, proposal_id, approve=approve, comment=comment)
    return outcome


async def close(
    ctx: ApiContext, principal: Principal, incident_id: str, verdict: Verdict, reason: str
) -> IncidentVerdict:
    """Close the incident with the analyst's verdict (audited under their identity)."""
    c = ctx.components
    try:
        record = await close_incident(
            c.store,
            c.audit,
            incident_id=incident_id,
            verdict=verdict,
            reason=reason,
            closed_by=principal.approver,
            at=ctx.now(),
        )
    except CloseForbidden as exc:
        raise Forbidden(str(exc)) from None
    except IncidentNotFound as exc:
        raise NotFound(str(exc)) from None
    except CloseRefused as exc:
        raise BadRequest(str(exc)) from None
    if ctx.verdicts is not None:
        await ctx.verdicts.publish_closing(record)
    return record


async def rollback(
    ctx: ApiContext, principal: Principal, action_id: str, comment: str | None
) -> ExecutionOutcome:
    """Undo an executed reversible action with its declared inverse."""
    record = await ctx.components.store.get_action(action_id)
    if record is None:
        raise NotFound(f"no action with id or key {action_id!r}")
    require_role(
        principal,
        decide_role(ctx, record.request.risk),
        f"rolling back a {record.request.risk.value}-risk {record.action}",
    )
    try:
        outcome = await ctx.components.executor.rollback(
            record.idempotency_key,
            actor=principal.identity,
            reason=comment or "rolled back by analyst",
        )
    except SocAgentError as exc:  # not reversible
        raise Conflict(str(exc)) from None
    if outcome.status == "failed":
        raise UpstreamFailed(f"rollback failed: {outcome.detail}")
    if not outcome.performed:  # e.g. already rolled back: the status alone does not say
        raise Conflict(outcome.detail)
    return outcome


async def kill_switch_state(ctx: ApiContext) -> dict[str, bool]:
    return await controls.kill_switch_state(ctx.components.store, ctx.components.settings.policy)


async def set_kill_switch(ctx: ApiContext, principal: Principal, on: bool) -> dict[str, bool]:
    """Engaging and releasing need different roles (`api.kill_switch_on_role`/`_off_role`)."""
    role = ctx.config.kill_switch_on_role if on else ctx.config.kill_switch_off_role
    require_role(principal, role, f"turning the kill switch {'on' if on else 'off'}")
    c = ctx.components
    return await controls.set_kill_switch(
        c.store, c.audit, c.settings.policy, on, actor=principal.identity, at=ctx.now()
    )


async def autonomy_state(ctx: ApiContext) -> dict[str, Any]:
    return await controls.autonomy_state(ctx.components.store, ctx.components.settings.policy)


async def action_autonomy_state(ctx: ApiContext) -> dict[str, Any]:
    return await controls.action_autonomy_state(
        ctx.components.store, ctx.components.settings.policy
    )


async def set_action_autonomy(
    ctx: ApiContext,
    principal: Principal,
    action: str,
    level: AutonomyLevel | None,
    reason: str | None,
) -> dict[str, Any]:
    """Cap (or, with None, uncap) one action's autonomy at runtime; admins only."""
    require_role(principal, Role.ADMIN, "capping an action's autonomy")
    c = ctx.components
    return await controls.set_action_autonomy(
        c.store,
        c.audit,
        c.settings.policy,
        action,
        level,
        actor=principal.identity,
        reason=reason,
        at=ctx.now(),
    )


async def set_autonomy(
    ctx: ApiContext, principal: Principal, level: AutonomyLevel | None, reason: str | None
) -> dict[str, Any]:
    """Lower (or, with None, restore) the agent's autonomy at runtime; admins only."""
    require_role(principal, Role.ADMIN, "changing the agent's autonomy")
    c = ctx.components
    return await controls.set_autonomy(
        c.store,
        c.audit,
        c.settings.policy,
        level,
        actor=principal.identity,
        reason=reason,
        at=ctx.now(),
    )
