"""Analysts' incident closings from the verdicts topic: a thin door to `close_incident`.

A closing is signed by the API that authenticated the analyst
(`signed_verdicts.verify_closing`); an unsigned, forged, altered or malformed
one is dead-lettered before anything else looks at it. The closing function
then applies the same rules as for the API: at least the analyst role, a
known incident, a reason. It keeps the record under an id derived from the
closing itself, so the same closing delivered twice is kept and audited once.

The API keeps a closing before it exports one, so a worker reading that
export finds it already kept ("duplicate"), however old it is by then; only a
stale closing not kept yet is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from soc_agent.audit.base import AuditSink
from soc_agent.models import IncidentVerdict
from soc_agent.pipeline.agent import Agent
from soc_agent.pipeline.closing import (
    CloseForbidden,
    CloseRefused,
    IncidentNotFound,
    close_incident,
    verdict_id,
)
from soc_agent.runtime.kafka.analyst_door import AnalystDoor
from soc_agent.runtime.kafka.records import OutRecord, Source
from soc_agent.runtime.kafka.signed_verdicts import UnauthenticatedVerdict, verify_closing
from soc_agent.settings.kafka import KafkaConfig
from soc_agent.store import Store

__all__ = ["ClosingProcessor"]

log = logging.getLogger(__name__)


class ClosingProcessor(AnalystDoor):
    """Applies closings from the verdicts topic through the closing function.

    `process` answers "closed" (kept and audited now), "duplicate" (already kept)
    or "dead_letter".
    """

    what = "closing"
    noun = "closings"

    def __init__(
        self,
        agent: Agent,
        store: Store,
        audit: AuditSink,
        config: KafkaConfig,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        super().__init__(agent, config, reads=config.topics.verdicts, clock=clock)
        self._store = store
        self._audit = audit

    async def process(self, value: bytes | None, source: Source) -> tuple[str, list[OutRecord]]:
        """Apply one closing; returns what happened and the records to publish."""
        try:
            verified = verify_closing(
                value or b"", self._keys, now=self._clock(), max_age=self._max_age
            )
        except UnauthenticatedVerdict as exc:
            return "dead_letter", await self._dead(str(exc), value, source)
        record = verified.record
        if await self._kept(record):
            return "duplicate", []
        if verified.stale is not None:
            return "dead_letter", await self._dead(verified.stale, value, source)
        try:
            await close_incident(
                self._store,
                self._audit,
                incident_id=record.incident_id,
                verdict=record.verdict,
                reason=record.reason,
                closed_by=record.closed_by,
                at=record.closed_at,
            )
        except (CloseForbidden, CloseRefused, IncidentNotFound) as exc:
            return "dead_letter", await self._dead(str(exc), value, source)
        return "closed", []

    async def _kept(self, record: IncidentVerdict) -> bool:
        """Whether this closing is already kept: under the id `close_incident` derives from
        the closing itself (the record's own `id` is not trusted to name it)."""
        derived = verdict_id(
            record.incident_id,
            record.closed_by.name,
            record.closed_at,
            record.verdict,
            record.reason,
        )
        return await self._store.get_verdict(derived) is not None
