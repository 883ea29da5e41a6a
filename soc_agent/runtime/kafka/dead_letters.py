"""Each dead letter on the dead-letter topic once, even when its worker dies publishing it.

A worker publishes a record's dead letters before committing the record, and
notes each one the broker acknowledged (`dlq.published:<id>`) so a
redelivery skips it. A worker killed between the acknowledgement and the
note would publish it a second time when the record is redelivered. So,
before publishing, the worker notes its intent (`dlq.intent:<id>`) with the
topic's end offsets at that moment. A redelivery that finds the intent but
not the note reads the topic from those offsets for a record carrying the
letter's id (header `soc-dlq-id`): found, it is noted and not published again;
not found (the worker died before the broker had it), it is published.

Reading needs Read on the dead-letter topic (README, Kafka ACLs). The reads
happen only after a crash, for the letters it left undecided.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from soc_agent.errors import SocAgentError
from soc_agent.runtime.kafka.records import DLQ_PREFIX
from soc_agent.runtime.kafka.topics import partitions_of
from soc_agent.settings.kafka import KafkaConfig

__all__ = ["DeadLetterTopic", "intent_flag", "published_flag"]

log = logging.getLogger(__name__)

# Some brokers report end offsets a little off: a scan starts this far before the intent's,
# and ends at the end offsets it read, or when the topic yields nothing for a while.
_BEFORE = 100
_ROUND_MS = 500
_IDLE_ROUNDS = 3
_SCAN_SECONDS = 30.0


def published_flag(letter_id: str) -> str:
    return f"dlq.published:{letter_id}"


def intent_flag(letter_id: str) -> str:
    return f"dlq.intent:{letter_id}"


class DeadLetterTopic:
    """The worker's reader of the dead-letter topic: its end offsets, and whether it holds
    a letter. One consumer outside any group, started on first use."""

    def __init__(self, config: KafkaConfig) -> None:
        self._config = config
        self._topic = config.topics.dlq
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._lock = asyncio.Lock()  # one scan at a time: they move the same consumer

    async def ends(self) -> dict[str, int]:
        """Each partition's end offset (JSON-ready: partition numbers as text)."""
        async with self._lock:
            consumer = await self._started()
            ends = await consumer.end_offsets(self._partitions)
        return {str(tp.partition): int(offset) for tp, offset in ends.items()}

    async def holds(self, letter_id: str, since: Mapping[str, Any]) -> bool:
        """Whether a record of `letter_id` is on the topic at or after the offsets `since`."""
        wanted = (DLQ_PREFIX + "id", letter_id.encode())
        async with self._lock:
            consumer = await self._started()
            consumer.assign(self._partitions)
            ends = await consumer.end_offsets(self._partitions)
            for tp in self._partitions:
                consumer.seek(tp, max(0, int(since.get(str(tp.partition), 0)) - _BEFORE))
            idle = 0
            deadline = time.monotonic() + _SCAN_SECONDS
            while idle < _IDLE_ROUNDS and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=_ROUND_MS)
                idle = 0 if batch else idle + 1
                for records in batch.values():
                    if any(wanted in (record.headers or ()) for record in records):
                        return True
                if all([await consumer.position(tp) >= ends[tp] for tp in self._partitions]):
                    return False
        if idle < _IDLE_ROUNDS:  # out of time, short of the end: publishing may repeat it
            log.warning(
                "dead letter %s: %s not read to its end within %.0f s; published again",
                letter_id,
                self._topic,
                _SCAN_SECONDS,
            )
        return False

    async def aclose(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            numbers = await partitions_of(self._config, self._topic)
            if not numbers:
                raise SocAgentError(f"the dead-letter topic {self._topic} does not exist")
            self._partitions = [TopicPartition(self._topic, p) for p in numbers]
            consumer = AIOKafkaConsumer(**self._config.client_options(), enable_auto_commit=False)
            await consumer.start()
            self._consumer = consumer
        return self._consumer
