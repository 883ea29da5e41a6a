"""pydantic models only: the nouns every other package shares."""

from soc_agent.models.alert import Alert, Entity, EntityType, Rule, Severity
from soc_agent.models.audit import AuditEvent, DeadLetter
from soc_agent.models.decision import (
    ActionCandidate,
    ActionRequest,
    ActionStatus,
    AutonomyLevel,
    Decision,
    Disposition,
    ExecutionStatus,
    RiskTier,
    RunMode,
    ScoreContribution,
)
from soc_agent.models.evidence import Evidence, EvidenceStatus, Investigation
from soc_agent.models.identity import Approver, Role
from soc_agent.models.incident import Incident
from soc_agent.models.proposal import Approval, ApprovalVerdict, Proposal, ProposalStatus
from soc_agent.models.verdict import ActionJudgement, ActionLabel, IncidentVerdict, Verdict

__all__ = [
    "ActionCandidate",
    "ActionJudgement",
    "ActionLabel",
    "ActionRequest",
    "ActionStatus",
    "Alert",
    "Approval",
    "ApprovalVerdict",
    "Approver",
    "AuditEvent",
    "AutonomyLevel",
    "DeadLetter",
    "Decision",
    "Disposition",
    "Entity",
    "EntityType",
    "Evidence",
    "EvidenceStatus",
    "ExecutionStatus",
    "Incident",
    "IncidentVerdict",
    "Investigation",
    "Proposal",
    "ProposalStatus",
    "RiskTier",
    "Role",
    "Rule",
    "RunMode",
    "ScoreContribution",
    "Severity",
    "Verdict",
]
