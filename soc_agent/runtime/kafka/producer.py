"""The one producer of a worker: acks from all in-sync replicas, awaited before commit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    KafkaError,
    KafkaTimeoutError,
    OutOfOrderSequenceNumber,
    ProducerClosed,
    ProducerFenced,
    UnknownProducerId,
)

from soc_agent.runtime.kafka.metrics import BrokerContact
from soc_agent.runtime.kafka.records import OutRecord
from soc_agent.settings.kafka import KafkaConfig

__all__ = ["Publisher", "RenewableProducer", "Retry", "is_transient", "make_producer"]

log = logging.getLogger(__name__)


def make_producer(config: KafkaConfig) -> Any:
    """acks=all, idempotent when the cluster supports it; record order kept per partition."""
    return AIOKafkaProducer(
        **config.client_options(),
        acks="all",
        enable_idempotence=config.enable_idempotence,
        linger_ms=5,
        compression_type=None,
    )


def is_transient(exc: BaseException) -> bool:
    """A broker error that waiting can cure: unreachable, no leader yet, timed out.

    aiokafka raises KafkaTimeoutError (not flagged retriable) when a batch
    expires in its buffer, which is what an outage longer than
    `request_timeout_ms` looks like.
    """
    return isinstance(exc, KafkaTimeoutError) or (isinstance(exc, KafkaError) and exc.retriable)


# The producer's idempotence state (producer id, per-partition sequences) no longer
# matches the broker's: every later batch to that partition would fail the same way.
_POISONED = (
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    InvalidProducerIdMapping,
    InvalidProducerEpoch,
    ProducerFenced,
)


class RenewableProducer:
    """The worker's producer, replaced by a fresh one when its idempotence state is poisoned.

    aiokafka 0.14 numbers a batch when it takes it from its buffer, also when
    it takes it only to fail it (a partition without a leader for longer than
    `request_timeout_ms`, as in a broker outage): that sequence number is never
    written, and every later batch to the partition fails with
    OutOfOrderSequenceNumber. A new producer gets a new producer id and its
    sequences start again. Everything that publishes goes through this one
    object (`send`), so a renewal reaches the audit export and the webhook too.
    """

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._current: Any = None
        self._lock = asyncio.Lock()
        self.generation = 0  # how many times the producer was replaced

    async def start(self) -> None:
        self._current = await self._started()

    async def _started(self) -> Any:
        producer = self._make()
        try:
            await producer.start()
        except BaseException:
            await producer.stop()  # close the connections a failed start may have opened
            raise
        return producer

    async def stop(self) -> None:
        if self._current is not None:
            await self._current.stop()

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = await self._current.send(
            topic, value=value, key=key, headers=headers
        )
        return future

    async def renew(self, seen: int) -> None:
        """Replace the producer that failed at generation `seen` (once, however many saw it)."""
        async with self._lock:
            if self.generation != seen:
                return  # another sender already replaced it
            fresh = await self._started()
            old, self._current = self._current, fresh
            self.generation += 1
        log.warning("producer replaced after its idempotence state broke (generation %d)", seen + 1)
        try:
            await old.stop()  # its pending batches fail; their senders retry on the new one
        except Exception as exc:
            log.warning("stopping the replaced producer failed: %s", type(exc).__name__)


@dataclass(frozen=True)
class Retry:
    """Backoff for transient errors: `first` seconds, doubling up to `max_delay`, unbounded.

    Unbounded on purpose: the records' input offsets stay uncommitted while
    they wait, so nothing is lost, and shutdown cancels the wait.
    """

    first: float = 0.25
    max_delay: float = 5.0


class Publisher:
    """Sends records; `send_all` returns once the broker acknowledged every one of them.

    Without `retry` an error propagates (the webhook answers 503 and the
    sender retries). With it, transient errors are retried: the records not
    yet acknowledged are sent again from the first of them, in order, so a
    later record of a key is never left standing before an earlier one; and a
    `RenewableProducer` whose idempotence state broke is replaced first.
    """

    def __init__(
        self, producer: Any, *, retry: Retry | None = None, contact: BrokerContact | None = None
    ) -> None:
        self._producer = producer
        self._retry = retry
        self._contact = contact
        self.sent = 0
        self.retries = 0

    @property
    def renewals(self) -> int:
        """How many times the producer was replaced (always 0 for a plain producer)."""
        return int(getattr(self._producer, "generation", 0))

    async def send_all(self, records: Iterable[OutRecord]) -> None:
        todo = list(records)
        delay = self._retry.first if self._retry else 0.0
        attempt = 0
        while todo:
            generation = getattr(self._producer, "generation", 0)
            acked, error = await self._attempt(todo)
            self.sent += acked
            if error is None:
                if self._contact is not None:
                    self._contact.succeeded()
                return
            if self._contact is not None:
                self._contact.failed("publish", error)
            renewable = isinstance(self._producer, RenewableProducer)
            poisoned = renewable and isinstance(error, _POISONED)
            # An attempt that straddled a renewal can fail with anything the old
            # producer's closing raises (ProducerClosed): its records just go again.
            straddled = renewable and getattr(self._producer, "generation", 0) != generation
            if self._retry is None or not (is_transient(error) or poisoned or straddled):
                raise error
            if poisoned:
                await self._renew(generation)
            todo = todo[acked:]
            attempt += 1
            self.retries += 1
            level = logging.WARNING if attempt == 1 or attempt % 10 == 0 else logging.DEBUG
            log.log(
                level,
                "publish failed (%s); %d record(s) sent again in %.2fs (attempt %d)",
                type(error).__name__,
                len(todo),
                delay,
                attempt,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._retry.max_delay)

    async def _renew(self, generation: int) -> None:
        assert isinstance(self._producer, RenewableProducer)
        try:
            await self._producer.renew(generation)
        except Exception as exc:  # brokers away again: the next attempt tries once more
            if not is_transient(exc):
                raise
            log.warning("replacing the producer failed (%s)", type(exc).__name__)

    async def _attempt(self, records: list[OutRecord]) -> tuple[int, Exception | None]:
        """Send in order; how many leading records were acknowledged, and the first error."""
        futures: list[asyncio.Future[Any]] = []
        send_error: Exception | None = None
        for r in records:
            try:
                futures.append(
                    await self._producer.send(r.topic, value=r.value, key=r.key, headers=r.headers)
                )
            except Exception as exc:  # no leader, metadata timeout, buffer full ...
                send_error = exc
                break
        # Every future settles before anything is resent: one still in flight may yet succeed.
        results = await asyncio.gather(*futures, return_exceptions=True)
        for acked, result in enumerate(results):
            if isinstance(result, Exception):
                return acked, result
            if isinstance(result, BaseException):
                # The record's future was cancelled by its producer closing, not this
                # task: an error, so a renewal retries it and a shutdown stops here.
                return acked, ProducerClosed()
        return len(results), send_error
