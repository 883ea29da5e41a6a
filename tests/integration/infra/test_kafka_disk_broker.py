"""A real Apache Kafka broker with its log on disk: restarts lose nothing.

What the Kafka worker's fault tests build on: acknowledged messages and a
consumer group's committed offsets survive a graceful restart and a crash
(SIGKILL) of the broker.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.infra.fixtures import needs
from tests.infra.kafka import KafkaBroker

pytestmark = needs("kafka")

TOPIC = "soc.alerts"
PARTITIONS = 3


async def _create_topic(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=1)]
        )
    finally:
        await admin.close()


async def _produce(bootstrap: str, first: int, count: int) -> dict[int, list[int]]:
    """Send alerts `first..first+count-1` with acks=all; returns the sequence per partition."""
    sent: dict[int, list[int]] = defaultdict(list)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for seq in range(first, first + count):
            alert = {"id": f"alert-{seq:04d}", "host": f"ws-{seq % 7:03d}", "seq": seq}
            metadata = await producer.send_and_wait(
                TOPIC,
                json.dumps(alert).encode(),
                key=alert["host"].encode(),
                headers=[("source", b"edr")],
            )
            sent[metadata.partition].append(seq)
    finally:
        await producer.stop()
    return dict(sent)


async def _consume(
    consumer: AIOKafkaConsumer, expected: int, within: float = 60.0
) -> dict[int, list[int]]:
    """Read until `expected` records arrived (bounded in time); the sequence per partition."""
    got: dict[int, list[int]] = defaultdict(list)
    total = 0
    async with asyncio.timeout(within):
        while total < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=expected - total)
            for tp, records in batches.items():
                for record in records:
                    assert record.headers == (("source", b"edr"),)
                    got[tp.partition].append(json.loads(record.value)["seq"])
                    total += 1
    return dict(got)


async def test_messages_survive_a_graceful_restart(kafka_disk_broker: KafkaBroker) -> None:
    broker = kafka_disk_broker
    await _create_topic(broker.bootstrap)
    sent = await _produce(broker.bootstrap, 0, 300)
    assert len(sent) == PARTITIONS, "keys spread over every partition"

    await asyncio.to_thread(broker.restart)

    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=broker.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        received = await _consume(consumer, 300)
        # Nothing lost, nothing duplicated, order kept within each partition.
        assert received == sent
        end = await consumer.end_offsets([TopicPartition(TOPIC, p) for p in range(PARTITIONS)])
        assert sum(end.values()) == 300
    finally:
        await consumer.stop()


async def test_committed_offsets_survive_a_crash(kafka_disk_broker: KafkaBroker) -> None:
    broker = kafka_disk_broker
    await _create_topic(broker.bootstrap)
    sent = await _produce(broker.bootstrap, 0, 200)

    async def group_consumer() -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            TOPIC,
            bootstrap_servers=broker.bootstrap,
            group_id="soc-agent-workers",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        return consumer

    first = await group_consumer()
    try:
        before = await _consume(first, 120)
        await first.commit()  # commit after durable processing
    finally:
        await first.stop()

    await asyncio.to_thread(broker.restart, crash=True)
    sent_after = await _produce(broker.bootstrap, 200, 60)

    second = await group_consumer()
    try:
        after = await _consume(second, 200 - 120 + 60)
    finally:
        await second.stop()

    # Resumes at the committed offsets: every acknowledged alert exactly once across both runs.
    for partition in range(PARTITIONS):
        expected = sent.get(partition, []) + sent_after.get(partition, [])
        assert before.get(partition, []) + after.get(partition, []) == expected
