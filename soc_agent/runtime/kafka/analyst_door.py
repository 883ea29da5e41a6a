"""What the worker's analyst doors (approvals, closings) share.

Both take records signed with `kafka.approvals_key` (refused when older than
`kafka.approvals_max_age_seconds`) and dead-letter what they refuse: the record
is kept and audited through the agent, like a bad alert, and its original bytes
and headers go to the DLQ topic with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import ClassVar

from soc_agent.models import DeadLetter
from soc_agent.models.ids import dead_letter_id
from soc_agent.pipeline.agent import Agent
from soc_agent.runtime.kafka.records import OutRecord, Source, dead_letter_record, decode_headers
from soc_agent.settings.kafka import KafkaConfig

__all__ = ["AnalystDoor"]

log = logging.getLogger(__name__)


class AnalystDoor:
    """The signing keys, the age bound, the clock and dead letters of one door.

    `what` names the door's records (in the log); `reads` is the topic it consumes.
    """

    what: ClassVar[str]
    noun: ClassVar[str]  # plural, for the warning when no key is configured

    def __init__(
        self, agent: Agent, config: KafkaConfig, *, reads: str, clock: Callable[[], datetime]
    ) -> None:
        self._agent = agent
        self._topics = config.topics
        self._keys = config.approvals_keys()
        self._max_age = timedelta(seconds=config.approvals_max_age_seconds)
        self._clock = clock
        if not self._keys:
            log.error(
                "no kafka.approvals_key: %s on %s cannot be authenticated and are dead-lettered",
                self.noun,
                reads,
            )

    async def _dead(self, reason: str, value: bytes | None, source: Source) -> list[OutRecord]:
        """Keep and audit `value` as a dead letter; returns its record for the DLQ topic.

        The reason is logged, never the record, which may carry a signature.
        """
        original = value or b""
        letter = DeadLetter(
            id=dead_letter_id(str(source), original),
            reason=reason,
            source=str(source),
            original=original,
            headers=decode_headers(source.headers),
            received_at=self._clock(),
        )
        log.warning("%s dead-lettered: %s (%s)", self.what, reason, source)
        await self._agent.dead_letter(letter)
        return [dead_letter_record(self._topics.dlq, letter, source)]
