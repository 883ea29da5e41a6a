"""Evidence: one investigation step's record, and the investigation around it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from soc_agent.models.assessment import ModelReport

__all__ = ["Evidence", "EvidenceStatus", "Investigation"]


class EvidenceStatus(StrEnum):
    OK = "ok"
    ERROR = "error"  # the connector failed or returned something invalid
    DENIED = "denied"  # the gateway refused: capability not granted
    SKIPPED = "skipped"  # the step's `when` was false or a dependency failed
    NOT_RUN = "not_run"  # the budget ran out before the step could run


class Evidence(BaseModel):
    """What one step asked, of whom, what came back and how long it took."""

    step: str
    connector: str
    capability: str
    query: dict[str, Any] = Field(default_factory=dict)
    status: EvidenceStatus
    result: Any = None
    error: str | None = None
    latency_ms: float = 0.0
    started_at: datetime
    overflow: int = 0  # for_each items beyond the step's max_items: not looked up


class Investigation(BaseModel):
    """The steps run for an incident under one playbook, and whether it concluded.

    `concluded` is false when the budget ran out; the policy then escalates
    instead of deciding on partial evidence.
    """

    id: str
    incident_id: str
    playbook: str
    evidence: list[Evidence] = Field(default_factory=list)
    steps_used: int = 0
    elapsed_ms: float = 0.0
    concluded: bool = True
    reason: str | None = None
    started_at: datetime
    finished_at: datetime | None = None
    model_run: ModelReport | None = None  # the reasoning investigator's part, if it ran

    def by_step(self) -> dict[str, Evidence]:
        return {e.step: e for e in self.evidence}
