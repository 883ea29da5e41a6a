"""The one producer of a worker: acks from all in-sync replicas, awaited before commit."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer

from soc_agent.runtime.kafka.config import KafkaConfig
from soc_agent.runtime.kafka.records import OutRecord

__all__ = ["Publisher", "make_producer"]


def make_producer(config: KafkaConfig) -> Any:
    """acks=all, idempotent when the cluster supports it; record order kept per partition."""
    return AIOKafkaProducer(
        **config.client_options(),
        acks="all",
        enable_idempotence=config.enable_idempotence,
        linger_ms=5,
        compression_type=None,
    )


class Publisher:
    """Sends records; `send_all` returns once the broker acknowledged every one of them."""

    def __init__(self, producer: Any) -> None:
        self._producer = producer
        self.sent = 0

    async def send_all(self, records: Iterable[OutRecord]) -> None:
        futures: list[asyncio.Future[Any]] = []
        for r in records:
            futures.append(
                await self._producer.send(r.topic, value=r.value, key=r.key, headers=r.headers)
            )
        if futures:
            await asyncio.gather(*futures)
            self.sent += len(futures)
