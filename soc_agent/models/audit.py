"""Audit events and dead letters."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

__all__ = ["AuditEvent", "DeadLetter"]


class AuditEvent(BaseModel):
    """Who did what, why, on which evidence, with what outcome.

    `seq`, `prev_hash` and `hash` are set by the audit log when appended;
    `chain` names the chain the entry is in when the log keeps several (a
    worker's own chain in Elasticsearch), None for the one shared chain.
    """

    actor: str
    action: str
    subject: str
    reason: str = ""
    outcome: str = ""
    evidence_ref: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    at: datetime
    seq: int | None = None
    prev_hash: str | None = None
    hash: str | None = None
    chain: str | None = None


class DeadLetter(BaseModel):
    """An input that could not be processed: reason, original bytes, where it came from."""

    id: str
    reason: str
    source: str
    original: bytes
    headers: dict[str, str] = Field(default_factory=dict)
    format_hint: str | None = None
    received_at: datetime
