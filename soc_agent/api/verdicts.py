"""Analyst verdicts and closings published to Kafka, signed, for the distributed runtime.

The API decides a proposal (or closes an incident) through the store first
(that is the record); it is then published, a verdict to the approvals topic
and a closing to the verdicts topic, so that workers and other clients see it,
signed with `kafka.approvals_key` over the authenticated analyst's name and
role (`runtime.kafka.signed_verdicts`), so a worker can tell it from a record
anyone with produce rights could write. Workers apply both idempotently, so
one already applied here is a no-op there (`runtime.kafka.approvals`,
`runtime.kafka.closings`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from soc_agent.errors import ConfigError
from soc_agent.models import ApprovalVerdict, Approver, IncidentVerdict
from soc_agent.runtime.kafka.producer import make_producer
from soc_agent.runtime.kafka.signed_verdicts import sign_closing, sign_verdict
from soc_agent.settings.kafka import KafkaConfig

__all__ = ["VerdictPublisher"]

log = logging.getLogger(__name__)


class VerdictPublisher:
    """Signs and publishes each verdict the API applied; refuses to start without a key."""

    def __init__(self, config: KafkaConfig) -> None:
        if config.approvals_key is None:
            raise ConfigError(
                "api.publish_approvals needs a signing key for the verdicts it publishes",
                key="kafka.approvals_key",
            )
        self._key = config.approvals_key.get_secret_value().encode()
        self._topic = config.topics.approvals
        self._closings = config.topics.verdicts
        self._producer: Any = make_producer(config)

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(
        self, approver: Approver, proposal_id: str, *, approve: bool, comment: str | None
    ) -> bool:
        """Send and wait for the broker's acknowledgement; False (logged) if it failed."""
        value = sign_verdict(
            proposal_id=proposal_id,
            analyst=approver.name,
            role=approver.role,
            verdict=ApprovalVerdict.APPROVE if approve else ApprovalVerdict.REJECT,
            comment=comment,
            issued_at=datetime.now(UTC),
            key=self._key,
        )
        try:
            await self._producer.send_and_wait(self._topic, value=value, key=proposal_id.encode())
        except Exception as exc:  # the store holds the decision; the copy is best effort
            log.warning("verdict for %s not published to %s: %s", proposal_id, self._topic, exc)
            return False
        return True

    async def publish_closing(self, record: IncidentVerdict) -> bool:
        """Export an incident's closing, signed; False (logged) if the broker refused."""
        value = sign_closing(record, self._key)
        try:
            await self._producer.send_and_wait(
                self._closings, value=value, key=record.incident_id.encode()
            )
        except Exception as exc:  # the store holds the verdict; the export is best effort
            log.warning("verdict %s not published to %s: %s", record.id, self._closings, exc)
            return False
        return True
