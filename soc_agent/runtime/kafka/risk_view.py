"""A worker's read-only view of entity risk: the stream app's table, read from its changelog.

The changelog is compacted and keyed by entity, so reading it from the start gives
every entity's latest state. The view answers `risk.lookup` only once it has read
up to where the changelog ended when it started; before that, and when the topic
cannot be read, the lookup fails (the steps reading it escalate) rather than
answering "no risk" from a partial view.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from soc_agent.errors import ConnectorError
from soc_agent.models import Entity, EntityType
from soc_agent.risk import RiskConfig
from soc_agent.risk.ledger import EntityRisk, window_starts
from soc_agent.runtime.kafka.topics import partitions_of, stream_topics
from soc_agent.settings.kafka import KafkaConfig

__all__ = ["RiskView"]

log = logging.getLogger(__name__)


class RiskView:
    """Entity key -> the latest state bytes, at most `max_entities` (least recent out)."""

    def __init__(self, kafka: KafkaConfig, risk: RiskConfig, *, max_entities: int = 200_000):
        self._kafka, self._risk, self._max = kafka, risk, max_entities
        self._topic = stream_topics(kafka)[1].name
        self._states: OrderedDict[str, bytes] = OrderedDict()
        self.caught_up = False

    async def run(self, stop: asyncio.Event, *, retry_seconds: float = 5.0) -> None:
        """Follow the changelog until `stop`, starting over after an error (the topic may
        not exist before the stream app's first start); meanwhile lookups fail."""
        while not stop.is_set():
            try:
                await self._follow(stop)
            except Exception as exc:  # logged and retried; lookups fail loudly meanwhile
                log.error("risk view: %s: %s", type(exc).__name__, exc)
            self.caught_up = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), retry_seconds)

    async def _follow(self, stop: asyncio.Event) -> None:
        options = {**self._kafka.client_options(), "client_id": f"{self._kafka.client_id}-risk"}
        consumer = AIOKafkaConsumer(
            **options, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            tps = [TopicPartition(self._topic, p) for p in await self._partitions()]
            if not tps:
                log.warning("risk view: no topic %s yet (is soc-agent stream running?)",
                            self._topic)  # fmt: skip
                return
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=500, max_records=5000)
                for records in batch.values():
                    for record in records:
                        self._keep(record.key, record.value)
                if not self.caught_up and all(
                    await asyncio.gather(*(self._past(consumer, tp, ends[tp]) for tp in tps))
                ):
                    self.caught_up = True
                    log.info("risk view: read %d entities from %s", len(self._states), self._topic)
        finally:
            await consumer.stop()

    async def _partitions(self) -> list[int]:
        """The changelog's partitions (none while it does not exist)."""
        return await partitions_of(self._kafka, self._topic)

    @staticmethod
    async def _past(consumer: AIOKafkaConsumer, tp: TopicPartition, end: int) -> bool:
        return bool(await consumer.position(tp) >= end)

    def _keep(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        entity = json.loads(key)
        if not isinstance(entity, str):
            return
        if value is None:  # a tombstone
            self._states.pop(entity, None)
            return
        self._states[entity] = value
        self._states.move_to_end(entity)
        while len(self._states) > self._max:
            self._states.popitem(last=False)

    def lookup(self, entity_type: str, value: str) -> dict[str, Any]:
        """An entity's risk in the window ending soonest after its newest alert."""
        if not self.caught_up:
            raise ConnectorError(
                "the stream app's entity risk is not read yet (or cannot be): "
                f"{self._topic} (is soc-agent stream running?)"
            )
        key = Entity(type=EntityType(entity_type), value=value).key
        raw = self._states.get(key)
        state = EntityRisk.from_json(json.loads(raw)) if raw is not None else EntityRisk(key)
        return state.lookup(window_starts(state.watermark, self._risk)[0], self._risk)
