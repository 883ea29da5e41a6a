"""Decisions: the score with its breakdown and a disposition per candidate action."""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any

from pydantic import BaseModel, Field, model_validator

from soc_agent.models.alert import Entity
from soc_agent.models.assessment import Assessment

__all__ = [
    "ActionCandidate",
    "ActionRequest",
    "ActionStatus",
    "AutonomyLevel",
    "Decision",
    "Disposition",
    "ExecutionStatus",
    "RiskTier",
    "RunMode",
    "ScoreContribution",
]


class Disposition(StrEnum):
    EXECUTED = "executed"
    PROPOSED = "proposed"
    NOTIFIED = "notified"
    ESCALATED = "escalated"
    SKIPPED = "skipped"
    DENIED = "denied"


class ActionStatus(StrEnum):
    """The executor's ledger row for one idempotency key."""

    CLAIMED = "claimed"  # being performed (or orphaned by a crash)
    EXECUTED = "executed"
    FAILED = "failed"
    ROLLING_BACK = "rolling_back"  # its inverse is being performed (claimed, like an execution)
    ROLLED_BACK = "rolled_back"


class ExecutionStatus(StrEnum):
    """What one call to the executor did; the ledger statuses plus the outcomes of a call."""

    EXECUTED = "executed"
    ALREADY_EXECUTED = "already_executed"  # the key's effect was already in place
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    IN_PROGRESS = "in_progress"  # another worker holds the claim
    OVER_BUDGET = "over_budget"  # the blast-radius budget was spent at execution time
    CLAIMED = "claimed"  # a rollback found the action still being performed
    ROLLING_BACK = "rolling_back"  # a rollback found another rollback under way


class AutonomyLevel(IntEnum):
    OPERATOR = 1  # recommends only; never executes
    COLLABORATOR = 2  # every action becomes a proposal
    CONSULTANT = 3  # executes above threshold; a sample is queued for review
    APPROVER = 4  # executes end to end; escalates edge cases
    OBSERVER = 5  # fully autonomous within guardrails


class RiskTier(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class RunMode(StrEnum):
    LIVE = "live"
    DRY_RUN = "dry_run"  # decide and record, execute nothing, queue nothing
    SHADOW = "shadow"  # like dry_run, used by replay to compare with what happened


class ScoreContribution(BaseModel):
    """One scoring rule that fired (or could not be evaluated), and why."""

    rule: str
    points: float
    reason: str
    evaluated: bool = True
    model_derived: bool = False  # the rule reads the model's assessment (`agent.*`)


class ActionRequest(BaseModel):
    """A candidate action and what the policy decided for it.

    `rule` names the threshold, autonomy level or guardrail that produced the
    disposition; `intended` is what would have happened without dry-run/shadow.
    Once acted on, `outcome` says what happened in words, `execution` is what
    the executor did (None when nothing was executed, e.g. queued) and
    `proposal_id` names the proposal or review item it queued, if any.
    """

    id: str
    action: str
    target: Entity
    connector: str
    capability: str
    args: dict[str, Any] = Field(default_factory=dict)
    playbook_rule: str
    disposition: Disposition
    rule: str
    reason: str
    intended: Disposition | None = None
    intended_rule: str | None = None
    guardrails: list[str] = Field(default_factory=list)
    autonomy_source: str | None = None
    execute_at: float | None = None
    propose_at: float | None = None
    autonomy: AutonomyLevel
    reversible: bool
    rollback_capability: str | None = None
    revert_after_seconds: int | None = None
    risk: RiskTier = RiskTier.MEDIUM
    required_approvals: int = 1
    review_sample: bool = False
    blast_radius: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str
    outcome: str | None = None
    execution: ExecutionStatus | None = None
    proposal_id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _typed_from_legacy_outcome(cls, data: Any) -> Any:
        """Decisions stored before `execution` and `proposal_id` said them only in `outcome`."""
        if not isinstance(data, dict) or "execution" in data or "proposal_id" in data:
            return data
        outcome = str(data.get("outcome") or "")
        head = outcome.split(":", 1)[0]
        if head in {s.value for s in ExecutionStatus}:
            return {**data, "execution": head}
        if outcome.startswith("queued as "):
            return {**data, "proposal_id": outcome.removeprefix("queued as ")}
        return data


class Decision(BaseModel):
    """The agent's verdict on an incident at one point in time."""

    id: str
    incident_id: str
    alert_ids: list[str]
    investigation_id: str | None
    playbook: str | None
    playbook_version: str | None = None
    trigger_alert_id: str | None = None
    score: float
    breakdown: list[ScoreContribution] = Field(default_factory=list)
    actions: list[ActionRequest] = Field(default_factory=list)
    concluded: bool = True
    mode: RunMode = RunMode.LIVE
    summary: str = ""
    created_at: datetime
    # The reasoning investigator's answer, when it ran (its full report, transcript
    # included, is on the investigation), or why it could not answer.
    assessment: Assessment | None = None
    model_escalation: str | None = None


class ActionCandidate(BaseModel):
    """An action a playbook's `respond` rule put forward, before policy decides.

    Produced by the playbook engine; the policy engine turns it into an
    ActionRequest with a disposition.
    """

    playbook_rule: str
    action: str
    target: Entity
    args: dict[str, Any] = Field(default_factory=dict)
    execute_at: float | None = None
    propose_at: float | None = None
    notify_at: float | None = None
    autonomy: AutonomyLevel | None = None
    revert_after_seconds: int | None = None
    requires: list[str] = Field(default_factory=list)
