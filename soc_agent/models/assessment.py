"""The reasoning investigator's answer: a verdict an analyst can check against its evidence."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Assessment", "Finding", "Verdict"]


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
