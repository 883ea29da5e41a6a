"""The audit chain's head as published on the audit topic: an anchor the store cannot rewrite.

Workers export every audit entry to the topic in chain order (`audit_export`).
Whoever can rewrite the store cannot rewrite what the broker already holds, so
the newest entry on the topic is a head `audit verify --against kafka` checks.
"""

from __future__ import annotations

import json

from aiokafka import AIOKafkaConsumer, TopicPartition

from soc_agent.errors import SocAgentError
from soc_agent.runtime.kafka.topics import partitions_of
from soc_agent.settings.kafka import KafkaConfig

__all__ = ["published_head"]

_WINDOW = 1000
_IDLE_MS = 2000


async def published_head(config: KafkaConfig) -> tuple[int, str] | None:
    """`(seq, hash)` of the shared chain's newest entry on the audit topic, or None when
    there is none (each worker's own chain is anchored in the shared one)."""
    topic = config.topics.audit
    partitions = await partitions_of(config, topic)
    if not partitions:
        raise SocAgentError(f"the audit topic {topic} does not exist")
    consumer = AIOKafkaConsumer(**config.client_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(assigned)
        ends = await consumer.end_offsets(assigned)
        best: tuple[int, str] | None = None
        for tp in assigned:
            # Read a window before the reported end up to the last record, not just the
            # record at end - 1: some brokers report end offsets a little off.
            consumer.seek(tp, max(0, ends[tp] - _WINDOW))
            while batch := await consumer.getmany(tp, timeout_ms=_IDLE_MS):
                for record in batch.get(tp, []):
                    head = _head(record.value)
                    if head is not None and (best is None or head[0] > best[0]):
                        best = head
        return best
    finally:
        await consumer.stop()


def _head(value: bytes | None) -> tuple[int, str] | None:
    try:
        doc = json.loads(value or b"")
        seq, digest = doc["seq"], doc["hash"]
        if doc.get("chain") is not None:  # a worker's own chain: anchored in the shared one
            return None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return (seq, digest) if isinstance(seq, int) and isinstance(digest, str) else None
