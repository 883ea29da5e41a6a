"""One input record of raw alerts through the core, and the records it produces.

The same `Agent.handle` as the embedded runtime decides each alert; this
module only turns bytes into alerts (dead-lettering the rest) and the
outcomes into output records: the decision, the proposals it queued, and the
ledger rows of the actions it executed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from soc_agent.ingest import FieldMapping, parse_payload
from soc_agent.models import ActionStatus, Decision, Disposition
from soc_agent.models.alert import MAX_ENTITIES
from soc_agent.pipeline.agent import Agent, AlertOutcome
from soc_agent.runtime.kafka.dead_letters import DeadLetterTopic, intent_flag, published_flag
from soc_agent.runtime.kafka.records import (
    DLQ_PREFIX,
    OutRecord,
    Source,
    action_record,
    dead_letter_record,
    decision_record,
    decode_headers,
    normalized_record,
    proposal_record,
)
from soc_agent.settings.kafka import TopicsConfig
from soc_agent.store import Store

__all__ = ["FORMAT_HEADER", "AlertProcessor", "MessageResult"]

FORMAT_HEADER = "soc-format"


class MessageResult:
    """What one input record became; only counts are kept."""

    __slots__ = ("alerts", "dead_letters", "filtered", "outcomes")

    def __init__(self) -> None:
        self.alerts = 0
        self.dead_letters = 0
        self.filtered = 0  # left out by a mapping's `keep` conditions
        self.outcomes: dict[str, int] = {}


class AlertProcessor:
    """Turns one record of raw alerts into agent outcomes and the records that answer them."""

    def __init__(
        self,
        agent: Agent,
        store: Store,
        topics: TopicsConfig,
        *,
        mappings: list[FieldMapping],
        clock: Callable[[], datetime],
        max_concurrent_alerts: int,
        max_entities: int = MAX_ENTITIES,
        dead_letters: DeadLetterTopic | None = None,
    ) -> None:
        """`dead_letters` reads the dead-letter topic, so a dead letter is published once
        even when a worker dies publishing it (without it: at least once)."""
        self._dlq = dead_letters
        self._agent = agent
        self._store = store
        self._topics = topics
        self._hints = topics.inputs()
        self._mappings = mappings
        self._clock = clock
        self._running = asyncio.Semaphore(max_concurrent_alerts)
        self._max_entities = max_entities

    async def process(
        self, value: bytes | None, source: Source
    ) -> tuple[MessageResult, list[OutRecord]]:
        """Decide every alert in the record; dead letters are stored, audited and returned."""
        headers = decode_headers(source.headers)
        hint = headers.get(FORMAT_HEADER) or self._hints.get(source.topic)
        parsed = parse_payload(
            value or b"",
            source=str(source),
            format_hint=hint,
            mappings=self._mappings,
            headers=headers,
            received_at=self._clock(),
            max_entities=self._max_entities,
        )
        result = MessageResult()
        result.filtered = len(parsed.filtered)
        out: list[OutRecord] = []
        for letter in parsed.dead_letters:
            result.dead_letters += 1
            if await self._published_before(letter.id):
                continue
            await self._agent.dead_letter(letter)
            out.append(dead_letter_record(self._topics.dlq, letter, source))

        async def one(alert_index: int) -> AlertOutcome:
            async with self._running:
                return await self._agent.handle(parsed.alerts[alert_index])

        outcomes = await asyncio.gather(*(one(i) for i in range(len(parsed.alerts))))
        for outcome in outcomes:
            result.alerts += 1
            result.outcomes[outcome.correlation] = result.outcomes.get(outcome.correlation, 0) + 1
            out.extend(await self.records_for(outcome, source))
        return result, out

    async def _published_before(self, letter_id: str) -> bool:
        """Whether an earlier delivery of the record published this dead letter (see
        `dead_letters`); if not, the intent to publish it is noted first."""
        store = self._store
        published, intent = published_flag(letter_id), intent_flag(letter_id)
        flags = await store.get_flags([published, intent])
        if flags[published]:
            return True  # acknowledged and noted before a crash
        if self._dlq is None:
            return False
        since = flags[intent]
        if since is None:
            await store.set_flag(intent, await self._dlq.ends())
            return False
        if await self._dlq.holds(letter_id, since):  # acknowledged, then a crash
            await store.set_flag(published, True)
            return True
        return False

    async def mark_published(self, records: list[OutRecord]) -> None:
        """Remember the dead letters the broker acknowledged, so a redelivery skips them."""
        for record in records:
            if record.topic != self._topics.dlq:
                continue
            letter_id = decode_headers(record.headers).get(DLQ_PREFIX + "id")
            if letter_id:
                await self._store.set_flag(published_flag(letter_id), True)

    async def records_for(self, outcome: AlertOutcome, source: Source) -> list[OutRecord]:
        decision = outcome.decision  # for a suppressed duplicate, its incident's standing one
        out = [
            decision_record(
                self._topics.decisions,
                decision,
                alert_id=outcome.alert.id,
                correlation=outcome.correlation,
                fresh=outcome.fresh,
                source=source,
            ),
            normalized_record(self._topics.alerts_normalized, outcome.alert, source),
        ]
        out.extend(await self.action_records(decision))
        return out

    async def action_records(self, decision: Decision) -> list[OutRecord]:
        """Proposals the decision queued and ledger rows of what it executed."""
        executed = [r for r in decision.actions if r.disposition is Disposition.EXECUTED]
        proposed = [r.proposal_id for r in decision.actions if r.proposal_id is not None]
        if not executed and not proposed:
            return []
        found = await self._store.actions_and_proposals(
            [r.idempotency_key for r in executed], proposed
        )
        records, proposals = iter(found[0]), iter(found[1])
        out: list[OutRecord] = []
        for req in decision.actions:
            if req.disposition is Disposition.EXECUTED:
                record = next(records)
                if record is not None and record.status is not ActionStatus.CLAIMED:
                    out.append(action_record(self._topics.actions, record))
            if req.proposal_id is not None and (proposal := next(proposals)) is not None:
                out.append(proposal_record(self._topics.proposals, proposal))
        return out
