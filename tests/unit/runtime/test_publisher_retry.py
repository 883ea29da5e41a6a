"""The worker's publisher rides out broker outages: transient errors are retried, in order.

The producer here is a scripted stand-in for aiokafka's (a third-party
client): each `send` consumes the next scripted outcome, so the tests can
place a failure exactly where an outage puts it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    NotLeaderForPartitionError,
    OutOfOrderSequenceNumber,
    TopicAuthorizationFailedError,
)

from soc_agent.runtime.kafka.metrics import BrokerContact
from soc_agent.runtime.kafka.producer import Publisher, RenewableProducer, Retry, is_transient
from soc_agent.runtime.kafka.records import OutRecord

FAST = Retry(first=0.001, max_delay=0.004)


class ScriptedProducer:
    """`send` follows the script: "ok", an exception for the ack, or ("raise", exc) at send."""

    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)
        self.delivered: list[bytes] = []  # what the broker acknowledged, in order
        self.calls = 0
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None
    ) -> asyncio.Future[Any]:
        self.calls += 1
        step = self.script.pop(0) if self.script else "ok"
        if isinstance(step, tuple):
            raise step[1]
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if step == "ok":
            self.delivered.append(value)
            future.set_result(None)
        else:
            future.set_exception(step)
        return future


def _records(n: int) -> list[OutRecord]:
    return [OutRecord("soc.audit", b"k", f"seq-{i}".encode()) for i in range(1, n + 1)]


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (KafkaTimeoutError(), True),  # a batch expired in the buffer during an outage
        (KafkaConnectionError("refused"), True),
        (NotLeaderForPartitionError(), True),
        (TopicAuthorizationFailedError(), False),
        (ValueError("not Kafka"), False),
    ],
)
def test_which_errors_are_transient(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


async def test_resends_from_the_first_unacknowledged_record_in_order() -> None:
    # seq-2's ack fails, seq-3 and seq-4 are acknowledged behind it: all of 2..4 go again,
    # so the last copy of every record stands in order (2, 3, 4 after 1).
    producer = ScriptedProducer(["ok", KafkaTimeoutError(), "ok", "ok"])
    contact = BrokerContact()
    publisher = Publisher(producer, retry=FAST, contact=contact)
    await publisher.send_all(_records(4))
    assert producer.delivered == [b"seq-1", b"seq-3", b"seq-4", b"seq-2", b"seq-3", b"seq-4"]
    assert publisher.retries == 1
    assert publisher.sent == 4
    assert contact.ok and contact.failures == 1


async def test_an_outage_is_waited_out_with_backoff() -> None:
    outage = [("raise", KafkaConnectionError("down"))] * 6
    producer = ScriptedProducer(["ok", *outage])
    publisher = Publisher(producer, retry=FAST)
    await publisher.send_all(_records(3))
    assert producer.delivered == [b"seq-1", b"seq-2", b"seq-3"]
    assert publisher.retries == 6


async def test_a_fatal_error_is_raised_not_retried() -> None:
    producer = ScriptedProducer(["ok", TopicAuthorizationFailedError()])
    contact = BrokerContact()
    publisher = Publisher(producer, retry=FAST, contact=contact)
    with pytest.raises(TopicAuthorizationFailedError):
        await publisher.send_all(_records(2))
    assert publisher.retries == 0
    assert not contact.ok


async def test_without_retry_the_first_error_reaches_the_caller() -> None:
    # The webhook's publisher: its HTTP client retries, the request must not hang.
    producer = ScriptedProducer([KafkaTimeoutError()])
    with pytest.raises(KafkaTimeoutError):
        await Publisher(producer).send_all(_records(2))


async def test_cancellation_stops_the_retrying() -> None:
    producer = ScriptedProducer([("raise", KafkaConnectionError("down"))] * 10_000)
    publisher = Publisher(producer, retry=Retry(first=0.01, max_delay=0.01))
    task = asyncio.create_task(publisher.send_all(_records(1)))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert producer.delivered == []
    assert 1 < publisher.retries < 50


async def test_a_producer_with_broken_sequences_is_replaced_once() -> None:
    # After an outage aiokafka's idempotent producer can answer OutOfOrderSequenceNumber for
    # every later batch of a partition; only a new producer (new producer id) recovers.
    broken = ScriptedProducer([OutOfOrderSequenceNumber()] * 100)
    fresh = ScriptedProducer([])
    made = iter([broken, fresh])
    producer = RenewableProducer(lambda: next(made))
    await producer.start()
    publishers = [Publisher(producer, retry=FAST) for _ in range(4)]
    await asyncio.gather(*(p.send_all(_records(2)) for p in publishers))
    assert producer.generation == 1, "four senders saw the poison, one renewal"
    assert broken.stopped and fresh.started and not fresh.stopped
    assert broken.delivered == []
    assert sorted(fresh.delivered) == sorted([b"seq-1", b"seq-2"] * 4)


async def test_a_poisoned_producer_is_fatal_when_it_cannot_be_replaced() -> None:
    producer = ScriptedProducer([OutOfOrderSequenceNumber()])
    with pytest.raises(OutOfOrderSequenceNumber):
        await Publisher(producer, retry=FAST).send_all(_records(1))
