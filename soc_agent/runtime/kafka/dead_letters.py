"""Dead letters of the worker's analyst doors (approvals, closings): kept, audited, copied.

A record a door refuses is kept and audited through the agent, like a bad
alert, and its original bytes and headers go to the DLQ topic with the reason.
"""

from __future__ import annotations

import logging
from datetime import datetime

from soc_agent.models import DeadLetter
from soc_agent.models.ids import dead_letter_id
from soc_agent.pipeline.agent import Agent
from soc_agent.runtime.kafka.records import OutRecord, Source, dead_letter_record, decode_headers

__all__ = ["dead_letter"]

log = logging.getLogger(__name__)


async def dead_letter(
    agent: Agent,
    dlq: str,
    *,
    what: str,
    reason: str,
    value: bytes | None,
    source: Source,
    at: datetime,
) -> list[OutRecord]:
    """Keep and audit `value` as a dead letter; returns its record for the `dlq` topic.

    `what` names the kind of record in the log (`approval`, `closing`); the reason is
    logged, never the record, which may carry a signature.
    """
    original = value or b""
    letter = DeadLetter(
        id=dead_letter_id(str(source), original),
        reason=reason,
        source=str(source),
        original=original,
        headers=decode_headers(source.headers),
        received_at=at,
    )
    log.warning("%s dead-lettered: %s (%s)", what, reason, source)
    await agent.dead_letter(letter)
    return [dead_letter_record(dlq, letter, source)]
