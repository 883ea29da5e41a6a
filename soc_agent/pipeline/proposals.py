"""Proposals: created from PROPOSED dispositions, approved or rejected by analysts.

Nothing executes twice: approvals are written with optimistic concurrency
(the proposal's version), and execution goes through the idempotent executor.
An expired proposal is never executed; it is escalated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from soc_agent_connectors.gateway import AuditSink

from soc_agent.actions.executor import Executor
from soc_agent.errors import SocAgentError
from soc_agent.models import (
    ActionRequest,
    Approval,
    AuditEvent,
    Decision,
    Proposal,
    ProposalStatus,
    Severity,
)
from soc_agent.policy import PolicyConfig, proposal_expiry, urgency
from soc_agent.store.base import Store

__all__ = ["ProposalConflict", "ProposalOutcome", "ProposalService"]


class ProposalConflict(SocAgentError):
    """The proposal is no longer in a state that allows this (approved, expired, ...)."""


@dataclass(frozen=True)
class ProposalOutcome:
    proposal: Proposal
    message: str


class ProposalService:
    def __init__(
        self, store: Store, executor: Executor, audit: AuditSink, *, clock: Callable[[], datetime]
    ) -> None:
        self._store = store
        self._executor = executor
        self._audit = audit
        self._clock = clock

    async def create(
        self,
        decision: Decision,
        request: ActionRequest,
        severity: Severity,
        criticality: str,
        policy: PolicyConfig,
        *,
        review: bool = False,
    ) -> Proposal | None:
        """Queue a proposal (or, for a level-3 sample, a review item); None if already queued."""
        now = self._clock()
        prefix = "rev" if review else "prop"
        proposal = Proposal(
            id=f"{prefix}-{request.idempotency_key[:16]}",
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
            return None
        await self._audit.append(
            AuditEvent(
                actor="soc-agent",
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
        return proposal

    async def approve(
        self, proposal_id: str, analyst: str, comment: str | None = None
    ) -> ProposalOutcome:
        proposal = await self._load(proposal_id)
        if proposal.status is ProposalStatus.REVIEW:
            return await self._conclude_review(proposal, analyst, comment, uphold=True)
        await self._expire_if_due(proposal)
        self._require_pending(proposal)
        if any(a.analyst == analyst and a.verdict == "approve" for a in proposal.approvals):
            raise ProposalConflict(
                f"{analyst} has already approved {proposal_id}; "
                "four-eyes needs a different approver"
            )
        now = self._clock()
        approvals = [
            *proposal.approvals,
            Approval(analyst=analyst, verdict="approve", comment=comment, at=now),
        ]
        approvers = sorted({a.analyst for a in approvals if a.verdict == "approve"})
        ready = len(approvers) >= proposal.request.required_approvals
        updated = proposal.model_copy(
            update={
                "approvals": approvals,
                "updated_at": now,
                "status": ProposalStatus.APPROVED if ready else ProposalStatus.PENDING,
            }
        )
        if not await self._store.update_proposal(updated, expected_version=proposal.version):
            raise ProposalConflict(f"{proposal_id} was changed by someone else; reload it")
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
        return await self._execute(
            updated.model_copy(update={"version": proposal.version + 1}), approvers
        )

    async def _execute(self, proposal: Proposal, approvers: list[str]) -> ProposalOutcome:
        outcome = await self._executor.execute(
            proposal.request, proposal.incident_id, approved_by=approvers
        )
        ok = outcome.status in ("executed", "already_executed")
        final = proposal.model_copy(
            update={
                "status": ProposalStatus.EXECUTED if ok else ProposalStatus.FAILED,
                "updated_at": self._clock(),
            }
        )
        await self._store.update_proposal(final, expected_version=proposal.version)
        verb = "executed" if ok else "failed"
        return ProposalOutcome(final, f"{proposal.id} {verb}: {outcome.detail}")

    async def reject(
        self, proposal_id: str, analyst: str, comment: str | None = None
    ) -> ProposalOutcome:
        proposal = await self._load(proposal_id)
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
                    Approval(analyst=analyst, verdict="reject", comment=comment, at=now),
                ],
            }
        )
        if not await self._store.update_proposal(updated, expected_version=proposal.version):
            raise ProposalConflict(f"{proposal_id} was changed by someone else; reload it")
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
                    actor="soc-agent",
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
        now = self._clock()
        if not uphold:
            await self._executor.rollback(
                proposal.request.idempotency_key,
                actor=analyst,
                reason=comment or "rejected in review",
            )
        status = ProposalStatus.CONFIRMED if uphold else ProposalStatus.ROLLED_BACK
        updated = proposal.model_copy(
            update={
                "status": status,
                "updated_at": now,
                "approvals": [
                    *proposal.approvals,
                    Approval(
                        analyst=analyst,
                        verdict="approve" if uphold else "reject",
                        comment=comment,
                        at=now,
                    ),
                ],
            }
        )
        if not await self._store.update_proposal(updated, expected_version=proposal.version):
            raise ProposalConflict(f"{proposal.id} was changed by someone else; reload it")
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
        return ProposalOutcome(updated, f"{proposal.id} {status.value.replace('_', ' ')}")

    async def _load(self, proposal_id: str) -> Proposal:
        proposal = await self._store.get_proposal(proposal_id)
        if proposal is None:
            raise SocAgentError(f"no proposal with id {proposal_id!r}")
        return proposal

    @staticmethod
    def _require_pending(proposal: Proposal) -> None:
        if proposal.status is not ProposalStatus.PENDING:
            raise ProposalConflict(f"{proposal.id} is {proposal.status.value}, not pending")
