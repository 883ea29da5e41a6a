"""Incidents: correlated alerts sharing entities within a window."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from soc_agent.models.alert import Entity, Severity

__all__ = ["Incident"]


class Incident(BaseModel):
    """A group of related alerts. Duplicates are not added, only counted."""

    id: str
    title: str
    severity: Severity
    alert_ids: list[str] = Field(default_factory=list)
    entities: list[Entity] = Field(default_factory=list)
    fingerprints: list[str] = Field(default_factory=list)
    rules: list[str] = Field(default_factory=list, description="detection rules seen")
    duplicate_count: int = 0
    first_seen: datetime
    last_seen: datetime
    status: str = "open"
