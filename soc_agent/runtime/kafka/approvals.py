"""Analyst verdicts from the approvals topic: a thin door to the proposal service.

A verdict is signed by the door that authenticated the analyst
(`signed_verdicts`); an unsigned, forged, altered or stale one is
dead-lettered before anything else looks at it. The proposal service then
decides with the same rules as for the API (the role for the risk tier,
four-eyes, never the agent's own identity); the executor's ledger lets an action take effect once,
so a verdict delivered twice changes nothing the second time, except that a
redelivered approval resumes an execution a crash cut off. A verdict that
cannot apply (bad JSON, unknown proposal, a conflicting verdict) is
dead-lettered with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from soc_agent.errors import SocAgentError
from soc_agent.models import ActionStatus, ApprovalVerdict, Proposal
from soc_agent.pipeline.agent import Agent
from soc_agent.pipeline.proposals import (
    ProposalConflict,
    ProposalService,
    ProposalVersionConflict,
)
from soc_agent.runtime.kafka.analyst_door import AnalystDoor
from soc_agent.runtime.kafka.records import OutRecord, Source, action_record, proposal_record
from soc_agent.runtime.kafka.signed_verdicts import (
    SignedVerdict,
    UnauthenticatedVerdict,
    verify_verdict,
)
from soc_agent.settings.kafka import KafkaConfig
from soc_agent.store import Store

__all__ = ["ApprovalProcessor"]

log = logging.getLogger(__name__)

_RETRIES = 5


class ApprovalProcessor(AnalystDoor):
    """Applies verdicts from the approvals topic through the proposal service."""

    what = "approval"
    noun = "verdicts"

    def __init__(
        self,
        agent: Agent,
        store: Store,
        proposals: ProposalService,
        config: KafkaConfig,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        super().__init__(agent, config, reads=config.topics.approvals, clock=clock)
        self._store = store
        self._proposals = proposals

    async def process(self, value: bytes | None, source: Source) -> tuple[str, list[OutRecord]]:
        """Apply one verdict; returns what happened and the records to publish."""
        try:
            verdict = verify_verdict(
                value or b"", self._keys, now=self._clock(), max_age=self._max_age
            )
        except UnauthenticatedVerdict as exc:
            return "dead_letter", await self._dead(str(exc), value, source)
        decide = (
            self._proposals.approve
            if verdict.verdict is ApprovalVerdict.APPROVE
            else self._proposals.reject
        )
        for _ in range(_RETRIES):
            try:
                outcome = await decide(verdict.proposal_id, verdict.approver, verdict.comment)
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


def _already_applied(proposal: Proposal, verdict: SignedVerdict) -> bool:
    """This analyst's same verdict is already on the proposal: a redelivery."""
    return any(
        a.analyst == verdict.analyst and a.verdict == verdict.verdict for a in proposal.approvals
    )
