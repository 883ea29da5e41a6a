"""The reasoning investigator's answer: a verdict an analyst can check against its evidence."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Assessment", "Finding", "ModelReport", "Verdict"]


class Verdict(StrEnum):
    MALICIOUS = "malicious"
    SUSPICIOUS = "suspicious"
    BENIGN = "benign"
    UNKNOWN = "unknown"


class Finding(BaseModel):
    """One claim and the evidence records it rests on (step ids, or `alert`)."""

    model_config = ConfigDict(extra="forbid")

    statement: str = Field(min_length=1, max_length=500)
    cites: list[str] = Field(min_length=1, max_length=10)


class Assessment(BaseModel):
    """What the model concluded, in a form an analyst reads in 30 seconds."""

    model_config = ConfigDict(extra="forbid")

    verdict: Verdict
    confidence: float = Field(ge=0.0, le=1.0)
    narrative: str = Field(min_length=1, max_length=1500)
    findings: list[Finding] = Field(default_factory=list, max_length=12)
    recommended_actions: list[str] = Field(default_factory=list, max_length=10)
    open_questions: list[str] = Field(default_factory=list, max_length=10)


class ModelReport(BaseModel):
    """One model-driven investigation: what it concluded, or why a human must look instead.

    Kept on the investigation as evidence: the assessment (None when the run
    escalated), the suspected injections, what it spent, what was dropped
    from its answer, and the full transcript.
    """

    model: str
    prompt_version: str
    prompt_sha256: str
    mode: Literal["agent", "hybrid"]
    assessment: Assessment | None = None
    escalation: str | None = None
    injection: list[str] = Field(default_factory=list)
    usage: dict[str, int] = Field(default_factory=dict)
    dropped_findings: int = 0
    dropped_actions: int = 0
    refused_calls: list[str] = Field(default_factory=list)
    elapsed_ms: float = 0.0
    transcript: list[Any] = Field(default_factory=list)
