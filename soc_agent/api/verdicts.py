"""Analyst verdicts published to Kafka's approvals topic, for the distributed runtime.

The API decides a proposal through the store first (that decision is the
record); the verdict is then published so that workers and other clients see
it. Workers apply verdicts idempotently, so one already applied here is a
no-op there.
"""

from __future__ import annotations

import logging
from typing import Any

from soc_agent.runtime.kafka.approvals import Verdict
from soc_agent.runtime.kafka.producer import make_producer
from soc_agent.settings.kafka import KafkaConfig

__all__ = ["VerdictPublisher"]

log = logging.getLogger(__name__)


class VerdictPublisher:
    def __init__(self, config: KafkaConfig) -> None:
        self._topic = config.topics.approvals
        self._producer: Any = make_producer(config)

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(
        self, proposal_id: str, analyst: str, *, approve: bool, comment: str | None
    ) -> bool:
        """Send and wait for the broker's acknowledgement; False (logged) if it failed."""
        verdict = Verdict(
            proposal_id=proposal_id,
            analyst=analyst,
            verdict="approve" if approve else "reject",
            comment=comment,
        )
        try:
            await self._producer.send_and_wait(
                self._topic,
                value=verdict.model_dump_json().encode(),
                key=proposal_id.encode(),
            )
        except Exception as exc:  # the store holds the decision; the copy is best effort
            log.warning("verdict for %s not published to %s: %s", proposal_id, self._topic, exc)
            return False
        return True
