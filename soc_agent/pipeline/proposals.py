"""Proposals: created from PROPOSED dispositions, approved or rejected by analysts.

This is the one place a proposal's lifecycle is decided, whatever the door
(API, web UI, CLI, Kafka approvals topic): each door authenticates the caller
and vouches for an `Approver` (name and role); this service enforces every
rule: the role needed for the action's risk tier (`api.approve_roles`), the
agent never decides its own proposal, four-eyes needs distinct approvers, an
expired proposal is never executed (it is escalated), and an
approved proposal whose execution a crash cut off is resumed by the runtime's
maintenance (`resume_approved`), not only by a redelivered verdict.

Nothing executes twice: approvals are written with optimistic concurrency
(the proposal's version; a lost race raises `ProposalVersionConflict`), and
execution goes through the idempotent executor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from soc_agent.actions.executor import Executor
from soc_agent.audit.base import AuditSink
from soc_agent.errors import SocAgentError
from soc_agent.models import (
    ActionJudgement,
    ActionRequest,
    ActionStatus,
    Approval,
    ApprovalVerdict,
    Approver,
    AuditEvent,
    Decision,
    ExecutionStatus,
    Proposal,
    ProposalStatus,
    RiskTier,
    Role,
    Severity,
)
from soc_agent.models.identity import canonical_name
from soc_agent.models.ids import proposal_id as mint_proposal_id
from soc_agent.models.proposal import approvers_of
from soc_agent.models.verdict import label_for
from soc_agent.policy import PolicyConfig, proposal_expiry, urgency
from soc_agent.store.base import Store

__all__ = [
    "RESUME_GRACE",
    "ProposalConflict",
    "ProposalForbidden",
    "ProposalNotFound",
    "ProposalOutcome",
    "ProposalService",
    "ProposalVersionConflict",
]

_DONE = (ExecutionStatus.EXECUTED, ExecutionStatus.ALREADY_EXECUTED)
# How long an APPROVED proposal is left to the approver who is executing it before
# maintenance resumes it; the executor's claim keeps a race to one effect anyway.
RESUME_GRACE = timedelta(seconds=30)


class ProposalNotFound(SocAgentError):
    """No proposal has this id."""


class ProposalForbidden(SocAgentError):
    """This identity may not decide this proposal: the agent's own, or a role too low."""


class ProposalConflict(SocAgentError):
    """The proposal is no longer in a state that allows this (approved, expired, ...)."""


class ProposalVersionConflict(ProposalConflict):
    """Someone else changed the proposal between reading and writing it: reload and retry."""


@dataclass(frozen=True)
class ProposalOutcome:
    """The proposal after a lifecycle step, and a sentence saying what happened."""

    proposal: Proposal
    message: str


class ProposalService:
    """Creates, approves, rejects, expires and resumes proposals; see the module docstring.

    `agent_id` is the agent's own identity: it raised every proposal, so it may
    decide none, and it is the actor of what the agent itself does (create, expire,
    resume).
    """

    def __init__(
        self,
        store: Store,
        executor: Executor,
        audit: AuditSink,
        *,
        agent_id: str,
        approve_roles: Mapping[RiskTier, Role],
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._executor = executor
        self._audit = audit
        self._agent_id = agent_id
        self._approve_roles = dict(approve_roles)
        self._clock = clock

    def required_role(self, risk: RiskTier) -> Role:
        """The least role that may approve, reject or review an action of this risk."""
        return self._approve_roles[risk]

    async def create(
        self,
        decision: Decision,
        request: ActionRequest,
        severity: Severity,
        criticality: str,
        policy: PolicyConfig,
        *,
        review: bool = False,
    ) -> tuple[Proposal, bool]:
        """Queue a proposal (or, for a level-3 sample, a review item) unless it is queued
        already; returns it and whether this call created it."""
        now = self._clock()
        proposal = Proposal(
            id=mint_proposal_id(request.idempotency_key, review=review),
            decision_id=decision.id,
            incident_id=decision.incident_id,
            request=request,
            status=ProposalStatus.REVIEW if review else ProposalStatus.PENDING,
            severity=severity.value,
            urgency=urgency(severity, decision.score, criticality),
            created_at=now,
            expires_at=now + proposal_expiry(severity, policy),
            updated_at=now,
        )
        if not await self._store.save_proposal(proposal):
            return proposal, False
        await self._audit.append(
            AuditEvent(
                actor=self._agent_id,
                action="proposal.review" if review else "proposal.create",
                subject=proposal.id,
                reason=request.reason,
                outcome=proposal.status.value,
                evidence_ref=decision.id,
                details={
                    "action": request.action,
                    "target": request.target.key,
                    "required_approvals": request.required_approvals,
                    "expires_at": proposal.expires_at.isoformat(),
                },
                at=now,
            )
        )
        return proposal, True

    async def approve(
        self, proposal_id: str, approver: Approver, comment: str | None = None
    ) -> ProposalOutcome:
        """Record `approver`'s approval; execute once enough distinct analysts approved."""
        proposal = await self._load_for(proposal_id, approver, "approving")
        analyst = approver.name
        if proposal.status is ProposalStatus.REVIEW:
            return await self._conclude_review(proposal, analyst, comment, uphold=True)
        await self._expire_if_due(proposal)
        self._require_pending(proposal)
        if analyst in proposal.approvers:
            raise ProposalConflict(
                f"{analyst} has already approved {proposal_id}; "
                "four-eyes needs a different approver"
            )
        now = self._clock()
        approvals = [
            *proposal.approvals,
            Approval(analyst=analyst, verdict=ApprovalVerdict.APPROVE, comment=comment, at=now),
        ]
        approvers = approvers_of(approvals)
        ready = len(approvers) >= proposal.request.required_approvals
        updated = proposal.model_copy(
            update={
                "approvals": approvals,
                "updated_at": now,
                "status": ProposalStatus.APPROVED if ready else ProposalStatus.PENDING,
            }
        )
        updated = await self._write(updated, proposal.version)
        await self._label(proposal, ActionJudgement.APPROVED, analyst, comment, now)
        await self._audit.append(
            AuditEvent(
                actor=analyst,
                action="proposal.approve",
                subject=proposal_id,
                reason=comment or "",
                outcome="approved" if ready else "awaiting second approver",
                evidence_ref=proposal.decision_id,
                details={
                    "approvers": approvers,
                    "required_approvals": proposal.request.required_approvals,
                },
                at=now,
            )
        )
        if not ready:
            return ProposalOutcome(
                updated,
                f"approval recorded; {proposal_id} needs "
                f"{proposal.request.required_approvals - len(approvers)} "
                "more approver(s)",
            )
        return await self._execute(updated)

    async def resume(self, proposal_id: str) -> ProposalOutcome:
        """Carry out an APPROVED proposal whose execution may have been cut off by a crash.

        The approval marks a proposal APPROVED before executing it; the executor's
        ledger keeps the action to one effect however often this runs. Any other
        status is returned unchanged.
        """
        proposal = await self._load(proposal_id)
        if proposal.status is not ProposalStatus.APPROVED:
            return ProposalOutcome(proposal, f"{proposal_id} is {proposal.status.value}")
        return await self._execute(proposal)

    async def resume_approved(
        self, *, older_than: timedelta = RESUME_GRACE
    ) -> list[ProposalOutcome]:
        """Resume every proposal left APPROVED for longer than `older_than` (a crash's trace).

        The grace period leaves a proposal being executed right now to its approver.
        """
        cutoff = self._clock() - older_than
        return [
            await self.resume(p.id)
            for p in await self._store.list_proposals(status=ProposalStatus.APPROVED, limit=10_000)
            if p.updated_at <= cutoff
        ]

    async def _execute(self, proposal: Proposal) -> ProposalOutcome:
        outcome = await self._executor.execute(
            proposal.request, proposal.incident_id, approved_by=proposal.approvers
        )
        if outcome.status is ExecutionStatus.IN_PROGRESS:
            # Another worker holds the claim (or a crash left it, and it is not stale yet):
            # the proposal stays APPROVED and is resumed later; it did not fail.
            return ProposalOutcome(proposal, f"{proposal.id} is being executed: {outcome.detail}")
        ok = outcome.status in _DONE
        final = proposal.model_copy(
            update={
                "status": ProposalStatus.EXECUTED if ok else ProposalStatus.FAILED,
                "updated_at": self._clock(),
            }
        )
        if await self._store.update_proposal(final, expected_version=proposal.version):
            final = final.model_copy(update={"version": proposal.version + 1})
        verb = "executed" if ok else "failed"
        return ProposalOutcome(final, f"{proposal.id} {verb}: {outcome.detail}")

    async def reject(
        self, proposal_id: str, approver: Approver, comment: str | None = None
    ) -> ProposalOutcome:
        """Record `approver`'s rejection; nothing executes (a review item is rolled back)."""
        proposal = await self._load_for(proposal_id, approver, "rejecting")
        analyst = approver.name
        if proposal.status is ProposalStatus.REVIEW:
            return await self._conclude_review(proposal, analyst, comment, uphold=False)
        await self._expire_if_due(proposal)
        self._require_pending(proposal)
        now = self._clock()
        updated = proposal.model_copy(
            update={
                "status": ProposalStatus.REJECTED,
                "updated_at": now,
                "approvals": [
                    *proposal.approvals,
                    Approval(
                        analyst=analyst, verdict=ApprovalVerdict.REJECT, comment=comment, at=now
                    ),
                ],
            }
        )
        updated = await self._write(updated, proposal.version)
        await self._label(proposal, ActionJudgement.REJECTED, analyst, comment, now)
        await self._audit.append(
            AuditEvent(
                actor=analyst,
                action="proposal.reject",
                subject=proposal_id,
                reason=comment or "",
                outcome="rejected",
                evidence_ref=proposal.decision_id,
                at=now,
            )
        )
        return ProposalOutcome(updated, f"{proposal_id} rejected; nothing was executed")

    async def expire_due(self) -> list[Proposal]:
        """Expire every pending proposal past its deadline; each is escalated, never run."""
        expired: list[Proposal] = []
        for proposal in await self._store.list_proposals(
            status=ProposalStatus.PENDING, limit=10_000
        ):
            if await self._expire_if_due(proposal, raise_conflict=False):
                expired.append(proposal)
        return expired

    async def _expire_if_due(self, proposal: Proposal, *, raise_conflict: bool = True) -> bool:
        now = self._clock()
        if proposal.status is not ProposalStatus.PENDING or now < proposal.expires_at:
            return False
        updated = proposal.model_copy(update={"status": ProposalStatus.EXPIRED, "updated_at": now})
        if await self._store.update_proposal(updated, expected_version=proposal.version):
            await self._audit.append(
                AuditEvent(
                    actor=self._agent_id,
                    action="proposal.expire",
                    subject=proposal.id,
                    reason=f"not decided before {proposal.expires_at.isoformat()}",
                    outcome="escalated",
                    evidence_ref=proposal.decision_id,
                    at=now,
                )
            )
        if raise_conflict:
            raise ProposalConflict(
                f"{proposal.id} expired at {proposal.expires_at.isoformat()} "
                "and was escalated; it will not be executed"
            )
        return True

    async def _conclude_review(
        self, proposal: Proposal, analyst: str, comment: str | None, *, uphold: bool
    ) -> ProposalOutcome:
        """Uphold or undo a sampled execution: the verdict is written first, so of two
        racing verdicts one wins, and only a rejection that won performs the rollback."""
        now = self._clock()
        key = proposal.request.idempotency_key
        record = await self._store.get_action(key)
        if uphold and (record is None or record.status is not ActionStatus.EXECUTED):
            state = record.status.value if record else "missing"
            raise ProposalConflict(f"{proposal.id} cannot be upheld: its action is {state}")
        status = ProposalStatus.CONFIRMED if uphold else ProposalStatus.ROLLED_BACK
        verdict = ApprovalVerdict.APPROVE if uphold else ApprovalVerdict.REJECT
        updated = proposal.model_copy(
            update={
                "status": status,
                "updated_at": now,
                "approvals": [
                    *proposal.approvals,
                    Approval(analyst=analyst, verdict=verdict, comment=comment, at=now),
                ],
            }
        )
        updated = await self._write(updated, proposal.version)
        await self._audit.append(
            AuditEvent(
                actor=analyst,
                action="proposal.review_concluded",
                subject=proposal.id,
                reason=comment or "",
                outcome=status.value,
                evidence_ref=proposal.decision_id,
                at=now,
            )
        )
        if uphold:
            await self._label(proposal, ActionJudgement.CONFIRMED, analyst, comment, now)
            return ProposalOutcome(updated, f"{proposal.id} confirmed")
        # The rollback labels the action (the executor labels every analyst's rollback).
        undo = await self._executor.rollback(
            key, actor=analyst, reason=comment or "rejected in review"
        )
        if undo.status in (ExecutionStatus.ROLLED_BACK, ExecutionStatus.ROLLING_BACK):
            return ProposalOutcome(updated, f"{proposal.id} rolled back")
        # The inverse failed: the item is open again, so the ledger and it still agree.
        reopened = updated.model_copy(update={"status": ProposalStatus.REVIEW})
        reopened = await self._write(reopened, updated.version)
        return ProposalOutcome(
            reopened, f"{proposal.id} not rolled back ({undo.detail}); still in review"
        )

    async def _label(
        self,
        proposal: Proposal,
        judgement: ActionJudgement,
        analyst: str,
        comment: str | None,
        at: datetime,
    ) -> None:
        await self._store.save_action_label(
            label_for(
                proposal.request,
                proposal.incident_id,
                judgement,
                analyst=analyst,
                comment=comment,
                at=at,
            )
        )

    async def _load(self, proposal_id: str) -> Proposal:
        proposal = await self._store.get_proposal(proposal_id)
        if proposal is None:
            raise ProposalNotFound(f"no proposal with id {proposal_id!r}")
        return proposal

    async def _load_for(self, proposal_id: str, approver: Approver, verb: str) -> Proposal:
        """The proposal, if `approver` may decide it: never the agent, and with the role."""
        if approver.bare_name == canonical_name(self._agent_id):
            # Nobody approves their own request: the agent raised every proposal.
            raise ProposalForbidden(
                f"{approver.name} is the agent's own identity; it cannot decide"
            )
        proposal = await self._load(proposal_id)
        risk, action = proposal.request.risk, proposal.request.action
        needed = self.required_role(risk)
        if not approver.role.includes(needed):
            raise ProposalForbidden(
                f"{verb} a {risk.value}-risk {action} needs the {needed.value} role; "
                f"{approver.name} is {approver.role.value}"
            )
        return proposal

    async def _write(self, updated: Proposal, version: int) -> Proposal:
        """Store `updated` over `version`; returns it as stored (with the next version)."""
        if not await self._store.update_proposal(updated, expected_version=version):
            raise ProposalVersionConflict(f"{updated.id} was changed by someone else; reload it")
        return updated.model_copy(update={"version": version + 1})

    @staticmethod
    def _require_pending(proposal: Proposal) -> None:
        if proposal.status is not ProposalStatus.PENDING:
            raise ProposalConflict(f"{proposal.id} is {proposal.status.value}, not pending")
