"""Analyst verdicts from the approvals topic resume their proposal, idempotently.

A verdict is `{"proposal_id", "analyst", "verdict": "approve"|"reject", "comment"}`.
The proposal service refuses what is no longer allowed and the executor's
ledger lets an action take effect once, so a verdict delivered twice changes
nothing the second time. A verdict that cannot apply (bad JSON, unknown
proposal, a conflicting verdict) is dead-lettered with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from soc_agent.actions.executor import Executor
from soc_agent.errors import SocAgentError
from soc_agent.models import DeadLetter, Proposal, ProposalStatus
from soc_agent.models.ids import dead_letter_id
from soc_agent.pipeline.agent import Agent
from soc_agent.pipeline.proposals import ProposalConflict, ProposalService
from soc_agent.runtime.kafka.config import TopicsConfig
from soc_agent.runtime.kafka.records import (
    OutRecord,
    Source,
    action_record,
    dead_letter_record,
    decode_headers,
    proposal_record,
)
from soc_agent.store import Store

__all__ = ["ApprovalProcessor", "Verdict"]

log = logging.getLogger(__name__)

_RETRIES = 5


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    proposal_id: str = Field(min_length=1, max_length=128)
    analyst: str = Field(min_length=1, max_length=256)
    verdict: Literal["approve", "reject"]
    comment: str | None = Field(default=None, max_length=4096)


class ApprovalProcessor:
    def __init__(
        self,
        agent: Agent,
        store: Store,
        proposals: ProposalService,
        executor: Executor,
        topics: TopicsConfig,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self._agent = agent
        self._store = store
        self._proposals = proposals
        self._executor = executor
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
                if verdict.verdict == "approve":
                    outcome = await self._proposals.approve(
                        verdict.proposal_id, verdict.analyst, verdict.comment
                    )
                else:
                    outcome = await self._proposals.reject(
                        verdict.proposal_id, verdict.analyst, verdict.comment
                    )
                return outcome.proposal.status.value, await self._records(outcome.proposal)
            except ProposalConflict as exc:
                proposal = await self._store.get_proposal(verdict.proposal_id)
                if proposal is None:
                    return "dead_letter", await self._dead(str(exc), value, source)
                if "changed by someone else" in str(exc):
                    continue  # a concurrent verdict won the version: reload and retry
                if _already_applied(proposal, verdict):
                    return "duplicate", await self._finish_approved(proposal)
                return "dead_letter", await self._dead(f"conflict: {exc}", value, source)
            except SocAgentError as exc:
                return "dead_letter", await self._dead(str(exc), value, source)
        return "dead_letter", await self._dead(
            f"{verdict.proposal_id} kept changing under {_RETRIES} attempts", value, source
        )

    async def _finish_approved(self, proposal: Proposal) -> list[OutRecord]:
        """A redelivered approval: finish an execution a crash may have interrupted.

        The proposal service marks a proposal APPROVED before executing it; if
        the worker died in between, the verdict's redelivery is the only thing
        that can carry it out. The executor's ledger keeps it to one effect.
        """
        if proposal.status is not ProposalStatus.APPROVED:
            return await self._records(proposal)
        approvers = sorted({a.analyst for a in proposal.approvals if a.verdict == "approve"})
        result = await self._executor.execute(
            proposal.request, proposal.incident_id, approved_by=approvers
        )
        ok = result.status in ("executed", "already_executed")
        final = proposal.model_copy(
            update={
                "status": ProposalStatus.EXECUTED if ok else ProposalStatus.FAILED,
                "updated_at": self._clock(),
            }
        )
        await self._store.update_proposal(final, expected_version=proposal.version)
        current = await self._store.get_proposal(proposal.id)
        return await self._records(current or final)

    async def _records(self, proposal: Proposal) -> list[OutRecord]:
        out = [proposal_record(self._topics.proposals, proposal)]
        record = await self._store.get_action(proposal.request.idempotency_key)
        if record is not None and record.status != "claimed":
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
