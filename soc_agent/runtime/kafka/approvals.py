"""Analyst verdicts from the approvals topic: a thin door to the proposal service.

A verdict is `{"proposal_id", "analyst", "verdict": "approve"|"reject", "comment"}`.
The proposal service decides (and refuses what is no longer allowed, or the
agent's own identity); the executor's ledger lets an action take effect once,
so a verdict delivered twice changes nothing the second time, except that a
redelivered approval resumes an execution a crash cut off. A verdict that
cannot apply (bad JSON, unknown proposal, a conflicting verdict) is
dead-lettered with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from soc_agent.errors import SocAgentError
from soc_agent.models import ActionStatus, ApprovalVerdict, DeadLetter, Proposal
from soc_agent.models.ids import dead_letter_id
from soc_agent.pipeline.agent import Agent
from soc_agent.pipeline.proposals import (
    ProposalConflict,
    ProposalService,
    ProposalVersionConflict,
)
from soc_agent.runtime.kafka.records import (
    OutRecord,
    Source,
    action_record,
    dead_letter_record,
    decode_headers,
    proposal_record,
)
from soc_agent.settings.kafka import TopicsConfig
from soc_agent.store import Store

__all__ = ["ApprovalProcessor", "Verdict"]

log = logging.getLogger(__name__)

_RETRIES = 5


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    proposal_id: str = Field(min_length=1, max_length=128)
    analyst: str = Field(min_length=1, max_length=256)
    verdict: ApprovalVerdict
    comment: str | None = Field(default=None, max_length=4096)


class ApprovalProcessor:
    """Applies verdicts from the approvals topic through the proposal service."""

    def __init__(
        self,
        agent: Agent,
        store: Store,
        proposals: ProposalService,
        topics: TopicsConfig,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self._agent = agent
        self._store = store
        self._proposals = proposals
        self._topics = topics
        self._clock = clock

    async def process(self, value: bytes | None, source: Source) -> tuple[str, list[OutRecord]]:
        """Apply one verdict; returns what happened and the records to publish."""
        try:
            verdict = Verdict.model_validate_json(value or b"")
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "message"
            return "dead_letter", await self._dead(
                f"invalid approval: {where}: {err['msg']}", value, source
            )
        for _ in range(_RETRIES):
            try:
                if verdict.verdict is ApprovalVerdict.APPROVE:
                    outcome = await self._proposals.approve(
                        verdict.proposal_id, verdict.analyst, verdict.comment
                    )
                else:
                    outcome = await self._proposals.reject(
                        verdict.proposal_id, verdict.analyst, verdict.comment
                    )
                return outcome.proposal.status.value, await self._records(outcome.proposal)
            except ProposalVersionConflict:
                continue  # a concurrent verdict won the version: reload and retry
            except ProposalConflict as exc:
                proposal = await self._store.get_proposal(verdict.proposal_id)
                if proposal is not None and _already_applied(proposal, verdict):
                    resumed = await self._proposals.resume(proposal.id)
                    return "duplicate", await self._records(resumed.proposal)
                return "dead_letter", await self._dead(f"conflict: {exc}", value, source)
            except SocAgentError as exc:
                return "dead_letter", await self._dead(str(exc), value, source)
        return "dead_letter", await self._dead(
            f"{verdict.proposal_id} kept changing under {_RETRIES} attempts", value, source
        )

    async def _records(self, proposal: Proposal) -> list[OutRecord]:
        out = [proposal_record(self._topics.proposals, proposal)]
        record = await self._store.get_action(proposal.request.idempotency_key)
        if record is not None and record.status is not ActionStatus.CLAIMED:
            out.append(action_record(self._topics.actions, record))
        return out

    async def _dead(self, reason: str, value: bytes | None, source: Source) -> list[OutRecord]:
        original = value or b""
        letter = DeadLetter(
            id=dead_letter_id(str(source), original),
            reason=reason,
            source=str(source),
            original=original,
            headers=decode_headers(source.headers),
            received_at=self._clock(),
        )
        log.warning("approval dead-lettered: %s (%s)", reason, source)
        await self._agent.dead_letter(letter)
        return [dead_letter_record(self._topics.dlq, letter, source)]


def _already_applied(proposal: Proposal, verdict: Verdict) -> bool:
    """This analyst's same verdict is already on the proposal: a redelivery."""
    return any(
        a.analyst == verdict.analyst and a.verdict == verdict.verdict for a in proposal.approvals
    )
