"""How an analyst closed an incident, kept as memory of past cases."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from soc_agent.models.decision import ActionRequest
from soc_agent.models.identity import Approver

__all__ = [
    "ActionJudgement",
    "ActionLabel",
    "IncidentVerdict",
    "Verdict",
    "count_verdicts",
    "label_for",
    "latest_verdict",
]


class Verdict(StrEnum):
    """The analyst's conclusion about an incident."""

    TRUE_POSITIVE = "true_positive"
    BENIGN_TRUE_POSITIVE = "benign_true_positive"  # real, but expected activity
    FALSE_POSITIVE = "false_positive"

    @property
    def warrants_action(self) -> bool:
        """Only a true positive makes containment right: acting on expected activity
        (a benign true positive) is as wrong as acting on a false positive."""
        return self is Verdict.TRUE_POSITIVE


class IncidentVerdict(BaseModel):
    """One closing of an incident. An incident closed again keeps every record; the
    latest is its verdict. `rules` and `entities` are the incident's at closing (every
    name of every entity), so history can be asked "this rule on this host"."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1, max_length=128)
    incident_id: str = Field(min_length=1, max_length=256)
    verdict: Verdict
    reason: str = Field(min_length=1, max_length=2000)
    closed_by: Approver
    closed_at: datetime
    rules: list[str] = Field(default_factory=list, max_length=1000)
    entities: list[str] = Field(default_factory=list, max_length=20000)
    alert_ids: list[str] = Field(default_factory=list, max_length=1000)

    @field_validator("reason")
    @classmethod
    def _reason_has_words(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a verdict needs a reason")
        return value.strip()


class ActionJudgement(StrEnum):
    """What an analyst did with one action: a label on the action itself, finer than the
    incident's verdict (the incident was real, but blocking that CDN address was wrong)."""

    APPROVED = "approved"  # approved the proposal
    REJECTED = "rejected"  # rejected the proposal
    CONFIRMED = "confirmed"  # upheld an execution sampled for review
    ROLLED_BACK = "rolled_back"  # undid an execution (a review rejected, or a rollback)

    @property
    def endorses(self) -> bool:
        return self in (ActionJudgement.APPROVED, ActionJudgement.CONFIRMED)


class ActionLabel(BaseModel):
    """One analyst's judgement of one action, kept beside the action's ledger row and
    proposal (which the doors already audit): calibration reads it as that action's label."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1, max_length=128)
    incident_id: str = Field(min_length=1, max_length=256)
    action_id: str = Field(min_length=1, max_length=256)
    action: str = Field(min_length=1, max_length=128)
    target: str = Field(min_length=1, max_length=2048)  # the entity key, `ip:203.0.113.7`
    judgement: ActionJudgement
    analyst: str = Field(min_length=1, max_length=256)
    comment: str | None = Field(default=None, max_length=4096)
    at: datetime

    @classmethod
    def of(
        cls,
        *,
        incident_id: str,
        action_id: str,
        action: str,
        target: str,
        judgement: ActionJudgement,
        analyst: str,
        comment: str | None,
        at: datetime,
    ) -> ActionLabel:
        """The label with its id: the same act recorded twice is one label."""
        text = "\x1f".join((action_id, analyst, judgement.value, at.isoformat()))
        return cls(
            id="label-" + hashlib.sha256(text.encode()).hexdigest()[:24],
            incident_id=incident_id,
            action_id=action_id,
            action=action,
            target=target,
            judgement=judgement,
            analyst=analyst,
            comment=comment,
            at=at,
        )


def label_for(
    request: ActionRequest,
    incident_id: str,
    judgement: ActionJudgement,
    *,
    analyst: str,
    comment: str | None,
    at: datetime,
) -> ActionLabel:
    """The label an analyst's `judgement` of this requested action leaves."""
    return ActionLabel.of(
        incident_id=incident_id,
        action_id=request.id,
        action=request.action,
        target=request.target.key,
        judgement=judgement,
        analyst=analyst,
        comment=comment,
        at=at,
    )


def count_verdicts(
    records: Iterable[IncidentVerdict], *, rule: str, entity: str, since: datetime, until: datetime
) -> dict[str, int]:
    """Counts per verdict (and `total`) of the records closed in [since, until] that held
    `rule` and named `entity` (an entity key)."""
    counts = dict.fromkeys((v.value for v in Verdict), 0)
    for record in records:
        if (
            since <= record.closed_at <= until
            and rule in record.rules
            and entity in record.entities
        ):
            counts[record.verdict.value] += 1
    return {**counts, "total": sum(counts.values())}


def latest_verdict(
    records: Iterable[IncidentVerdict], *, entity: str, until: datetime
) -> Verdict | None:
    """The verdict of the latest record closed by `until` that named `entity`."""
    named = [r for r in records if r.closed_at <= until and entity in r.entities]
    return max(named, key=lambda r: r.closed_at).verdict if named else None
