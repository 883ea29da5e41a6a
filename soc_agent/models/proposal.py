"""Proposals: actions waiting for an analyst, and the approvals they collect."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from soc_agent.models.decision import ActionRequest

__all__ = ["Approval", "ApprovalVerdict", "Proposal", "ProposalStatus", "approvers_of"]


class ProposalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"  # enough approvals; execution follows
    EXECUTED = "executed"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"  # never executed; escalated
    REVIEW = "review"  # executed under autonomy level 3 and sampled for an analyst's review
    CONFIRMED = "confirmed"  # a reviewed execution the analyst upheld
    ROLLED_BACK = "rolled_back"  # a reviewed execution the analyst rejected, then undone


class ApprovalVerdict(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class Approval(BaseModel):
    """One analyst's verdict on a proposal (or on a review item)."""

    analyst: str
    verdict: ApprovalVerdict
    comment: str | None = None
    at: datetime


class Proposal(BaseModel):
    """A disposition waiting for analysts (or, as a review item, an execution to review)."""

    id: str
    decision_id: str
    incident_id: str
    request: ActionRequest
    status: ProposalStatus = ProposalStatus.PENDING
    severity: str
    urgency: float
    approvals: list[Approval] = Field(default_factory=list)
    created_at: datetime
    expires_at: datetime
    updated_at: datetime
    version: int = 1

    @property
    def approvers(self) -> list[str]:
        """The distinct analysts who approved, sorted: four-eyes counts these."""
        return approvers_of(self.approvals)


def approvers_of(approvals: list[Approval]) -> list[str]:
    return sorted({a.analyst for a in approvals if a.verdict is ApprovalVerdict.APPROVE})
