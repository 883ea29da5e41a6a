"""`soc-agent worker`: the Kafka runtime around the same core as the embedded one.

Delivery: at least once in, idempotent processing. A record's offset is
committed only after the alert's decision is in the store and every record it
produced (decision, proposals, actions, dead letters, its audit entries) is
acknowledged by the brokers (acks=all); per partition the commit never passes
an unfinished offset. A redelivered record is decided again by `Agent.handle`,
which recognises the alert and returns the earlier decision.

Backpressure: at most `max_in_flight` records are being processed; at that
point every assigned partition is paused (nothing more is fetched, nothing is
buffered) until the count falls to the low-water mark.

Shutdown (SIGTERM): stop fetching, let in-flight work finish within
`shutdown_timeout_seconds`, export the audit tail, commit, leave the group.
Rebalance: work of revoked partitions gets `revoke_timeout_seconds` to finish
and what finished is committed; the rest is cancelled and not committed, so
the partition's new owner processes it again, idempotently.

Broker outage: publishing retries transient errors with backoff (the work
stays in flight, its offset uncommitted) and a commit gives up after
`commit_timeout_seconds` to be tried again at the next interval, so the loop
keeps coming round, the worker stays alive and resumes when the brokers
return. `snapshot()` is what /healthz, /readyz and /metrics read.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from soc_agent.failpoints import failpoint
from soc_agent.runtime.components import Components
from soc_agent.runtime.kafka.alerts import AlertProcessor
from soc_agent.runtime.kafka.approvals import ApprovalProcessor
from soc_agent.runtime.kafka.audit_export import AuditExporter
from soc_agent.runtime.kafka.closings import ClosingProcessor
from soc_agent.runtime.kafka.dead_letters import DeadLetterTopic
from soc_agent.runtime.kafka.metrics import (
    BrokerContact,
    Histogram,
    WorkerReport,
    WorkerSnapshot,
)
from soc_agent.runtime.kafka.offsets import OffsetTracker
from soc_agent.runtime.kafka.producer import Publisher, Retry, is_transient
from soc_agent.runtime.kafka.records import OutRecord, Source
from soc_agent.settings.kafka import KafkaConfig

__all__ = ["KafkaWorker"]

log = logging.getLogger(__name__)

_TP = tuple[str, int]


class KafkaWorker:
    """One consumer-group member: feeds records to the agent, publishes, then commits.

    See the module docstring for the delivery guarantee it keeps.
    """

    def __init__(
        self, components: Components, config: KafkaConfig, consumer: Any, producer: Any
    ) -> None:
        self._c = components
        self._config = config
        self._consumer = consumer
        self.broker = BrokerContact()
        self._publisher = Publisher(producer, retry=Retry(), contact=self.broker)
        self._topics = config.topics
        self._tracker = OffsetTracker()
        self._tasks: dict[tuple[str, int, int], asyncio.Task[None]] = {}
        self._analyst_lock = asyncio.Lock()
        self._paused = False
        self._failure: BaseException | None = None
        self._chore: asyncio.Task[None] | None = None
        self.report = WorkerReport()
        self._latency = Histogram()
        self._heartbeat = time.monotonic()  # the consume loop stamps it every round
        self._running = False
        self._committed: dict[_TP, int] = {}
        backend = components.backend
        self._exporter = AuditExporter(
            components.audit,
            components.store,
            self._publisher,
            self._topics.audit,
            locks=backend.lock,
        )
        self._maintenance_lock = backend.lock("maintenance")
        self._dead_letters = DeadLetterTopic(config)
        self._alerts = AlertProcessor(
            components.agent,
            components.store,
            self._topics,
            mappings=components.mappings,
            clock=components.clock,
            max_concurrent_alerts=components.settings.alerts_at_once(worker=True),
            max_entities=components.settings.runtime.max_entities_per_alert,
            dead_letters=self._dead_letters,
        )
        self._approvals = ApprovalProcessor(
            components.agent,
            components.store,
            components.proposals,
            config,
            clock=components.clock,
        )
        self._closings = ClosingProcessor(
            components.agent,
            components.store,
            components.audit,
            config,
            clock=components.clock,
        )

    # -- subscription ---------------------------------------------------------------------

    def topics(self) -> list[str]:
        """What the worker consumes: the alert topics, then the analysts' doors."""
        return [*self._topics.inputs(), self._topics.approvals, self._topics.verdicts]

    def subscribe(self) -> None:
        self._consumer.subscribe(topics=self.topics(), listener=_Rebalance(self))

    # -- the loop -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> WorkerReport:
        """Consume until `stop` is set (or processing fails), then shut down gracefully."""
        last_commit = time.monotonic()
        last_maintenance = 0.0
        self._running = True
        try:
            while not stop.is_set() and self._failure is None:
                self._heartbeat = time.monotonic()
                self._backpressure()
                free = self._config.max_in_flight - len(self._tasks)
                batch = await self._consumer.getmany(timeout_ms=200, max_records=max(free, 1))
                for tp, records in batch.items():
                    for record in records:
                        self._start(tp, record)
                now = time.monotonic()
                if now - last_commit >= self._config.commit_interval_seconds:
                    await self._commit_within()
                    last_commit = now
                due = now - last_maintenance >= self._config.maintenance_interval_seconds
                if due and (self._chore is None or self._chore.done()):
                    # Off the loop: auto-reverts call connectors, which can take longer
                    # than liveness (`health_stale_seconds`) allows one loop round.
                    self._chore = asyncio.create_task(self._maintenance(), name="maintenance")
                    last_maintenance = now
        finally:
            self._running = False
            await self._drain()
        if self._failure is not None:
            raise self._failure
        return self.report

    def _backpressure(self) -> None:
        assigned = self._consumer.assignment()
        in_flight = len(self._tasks)
        self.report.max_in_flight_seen = max(self.report.max_in_flight_seen, in_flight)
        if not self._paused and in_flight >= self._config.max_in_flight:
            self._consumer.pause(*assigned)
            self._paused = True
            self.report.pauses += 1
            log.info("saturated at %d in flight: partitions paused", in_flight)
        elif self._paused and in_flight <= self._config.resume_at:
            self._consumer.resume(*assigned)
            self._paused = False
            log.info("%d in flight: partitions resumed", in_flight)
        elif self._paused:
            # Partitions assigned by a rebalance while saturated start unpaused.
            fresh = set(assigned) - set(self._consumer.paused())
            if fresh:
                self._consumer.pause(*fresh)

    def _start(self, tp: Any, record: Any) -> None:
        source = Source(tp.topic, tp.partition, record.offset, record.key, record.headers or ())
        self._tracker.start(tp.topic, tp.partition, record.offset)
        self.report.records += 1
        if tp.topic == self._topics.approvals:
            work: Callable[[], Awaitable[None]] = lambda: self._analyst(  # noqa: E731
                self._approvals, self.report.approvals, record.value, source
            )
        elif tp.topic == self._topics.verdicts:
            work = lambda: self._analyst(  # noqa: E731
                self._closings, self.report.closings, record.value, source
            )
        else:
            work = lambda: self._alert(record.value, source)  # noqa: E731
        key = (tp.topic, tp.partition, record.offset)
        task = asyncio.create_task(self._guard(work, source), name=f"soc {source}")
        self._tasks[key] = task
        task.add_done_callback(lambda _: self._tasks.pop(key, None))

    async def _guard(self, work: Callable[[], Awaitable[None]], source: Source) -> None:
        began = time.monotonic()
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The offset stays unfinished, so it is never committed: stop and let a
            # restarted worker (or the partition's next owner) process it again.
            log.exception("processing %s failed; the worker stops without committing it", source)
            if self._failure is None:
                self._failure = exc
            return
        self._tracker.finish(source.topic, source.partition, source.offset)
        self._latency.observe(time.monotonic() - began)

    async def _alert(self, value: bytes | None, source: Source) -> None:
        result, records = await self._alerts.process(value, source)
        await self._publisher.send_all(records)
        failpoint("records.published")
        if result.dead_letters:
            failpoint("dead_letters.published")
        await self._alerts.mark_published(records)
        self.report.alerts += result.alerts
        self.report.dead_letters += result.dead_letters
        self.report.filtered += result.filtered
        for name, n in result.outcomes.items():
            self.report.outcomes[name] = self.report.outcomes.get(name, 0) + n

    async def _analyst(
        self,
        door: ApprovalProcessor | ClosingProcessor,
        counts: dict[str, int],
        value: bytes | None,
        source: Source,
    ) -> None:
        """One approval or closing; they are rare, so one at a time keeps them simple."""
        records: list[OutRecord]
        async with self._analyst_lock:
            what, records = await door.process(value, source)
        await self._publisher.send_all(records)
        counts[what] = counts.get(what, 0) + 1
        if what == "dead_letter":
            self.report.dead_letters += 1

    # -- commits --------------------------------------------------------------------------

    async def commit(self, only: set[_TP] | None = None) -> None:
        """Commit every partition's finished prefix, after the audit tail is on its topic."""
        positions = self._tracker.committable()
        if only is not None:
            positions = {k: v for k, v in positions.items() if k in only}
        if not positions:
            return
        await self._exporter.export()
        offsets = {TopicPartition(t, p): pos for (t, p), pos in positions.items()}
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance took the partitions; their new owner will reprocess idempotently.
            log.warning("commit refused (%s); the records will be processed again", exc)
            return
        self._tracker.mark_committed(positions)
        self._committed.update(positions)
        self.report.commits += 1
        self.broker.succeeded()

    async def _commit_within(self, only: set[_TP] | None = None) -> None:
        """`commit`, abandoned after `commit_timeout_seconds` and left for the next interval.

        aiokafka retries a commit until the group coordinator answers, and the
        audit export before it retries its publishes: during a broker outage
        either would hold the loop (and shutdown) for as long as the outage.
        Abandoning is safe: nothing is marked committed unless the broker took it.
        """
        try:
            async with asyncio.timeout(self._config.commit_timeout_seconds):
                await self.commit(only)
        except (TimeoutError, KafkaError) as exc:
            if isinstance(exc, KafkaError) and not is_transient(exc):
                raise
            self.report.commit_failures += 1
            self.broker.failed("commit", exc)
            log.warning("commit not done (%s); tried again later", type(exc).__name__)

    async def on_revoked(self, revoked: set[Any]) -> None:
        gone = {(tp.topic, tp.partition) for tp in revoked}
        tasks = [t for (topic, p, _), t in list(self._tasks.items()) if (topic, p) in gone]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self._config.revoke_timeout_seconds)
            for task in pending:
                task.cancel()
            self.report.dropped_on_revoke += len(pending)
            if pending:
                await asyncio.wait(pending)
        try:
            await self._commit_within(only=gone)
        except KafkaError as exc:
            log.warning("commit on revoke failed: %s", exc)
        for topic, partition in gone:
            self._tracker.forget(topic, partition)
            self._committed.pop((topic, partition), None)
        self._paused = False if not self._tasks else self._paused

    # -- maintenance and shutdown ---------------------------------------------------------

    async def _maintenance(self) -> None:
        """Expire due proposals, resume approved ones a crash cut off and lift due
        auto-reverts; one worker at a time does it.

        A failure is logged and retried at the next interval: nothing it does is
        tied to an offset, so it never stops consumption.
        """
        try:
            async with self._maintenance_lock.hold(wait=False) as mine:
                if not mine:
                    return
                expired = await self._c.proposals.expire_due()
                resumed = await self._c.proposals.resume_approved()
                reverted = await self._c.executor.revert_due()
        except Exception:
            log.exception("maintenance failed; retried at the next interval")
            return
        if expired or resumed or reverted:
            log.info(
                "maintenance: %d expired, %d resumed, %d reverted",
                len(expired),
                len(resumed),
                len(reverted),
            )

    async def _drain(self) -> None:
        """Stop fetching, finish in-flight work within the timeout, commit what finished."""
        with contextlib.suppress(IllegalStateError):
            self._consumer.pause(*self._consumer.assignment())
        tasks = list(self._tasks.values())
        if self._chore is not None and not self._chore.done():
            tasks.append(self._chore)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self._config.shutdown_timeout_seconds)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("%d records unfinished at shutdown: not committed", len(pending))
                await asyncio.wait(pending)
        self._exporter.export_every_chain_next()
        try:
            await self._commit_within()
        except KafkaError as exc:
            log.warning("final commit failed: %s", exc)
        finally:
            try:
                await self._exporter.aclose()
            except Exception as exc:  # the store is down: its entries go out again (at least once)
                log.warning("audit export cursor not stored at shutdown: %s", type(exc).__name__)
            await self._dead_letters.aclose()

    # -- instrumentation ------------------------------------------------------------------

    def snapshot(self) -> WorkerSnapshot:
        """The state /healthz, /readyz and /metrics report; copies, so readers see one instant."""
        try:
            assigned = tuple(sorted((tp.topic, tp.partition) for tp in self._consumer.assignment()))
        except IllegalStateError:  # the consumer is closing
            assigned = ()
        mine = set(assigned)
        return WorkerSnapshot(
            report=copy.deepcopy(self.report),
            in_flight=len(self._tasks),
            in_flight_limit=self._config.max_in_flight,
            paused=self._paused,
            running=self._running,
            loop_age=max(0.0, time.monotonic() - self._heartbeat),
            assigned=assigned,
            in_group=_in_group(self._consumer),
            broker_ok=self.broker.ok,
            broker_error=self.broker.error,
            broker_state_age=self.broker.age(),
            latency=self._latency.copy(),
            committed={k: v for k, v in self._committed.items() if k in mine},
            publish_retries=self._publisher.retries,
            producer_renewals=self._publisher.renewals,
        )


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: KafkaWorker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        await self._worker.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[Any]) -> None:
        log.info("assigned %s", sorted(f"{tp.topic}/{tp.partition}" for tp in assigned))


def _in_group(consumer: Any) -> bool | None:
    """Whether the consumer is a member of its group with a live coordinator.

    aiokafka has no public accessor, so this reads its coordinator's fields
    (`member_id`, `generation`, `coordinator_id`) and answers None if a
    version of the client does not have them.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    member = getattr(coordinator, "member_id", None)
    generation = getattr(coordinator, "generation", None)
    if not isinstance(member, str) or not isinstance(generation, int):
        return None
    # No generation is -1; tansu numbers the first one 0 where Kafka starts at 1.
    joined = bool(member) and generation >= 0
    return joined and getattr(coordinator, "coordinator_id", None) is not None


def make_consumer(config: KafkaConfig) -> Any:
    return AIOKafkaConsumer(
        **config.client_options(),
        group_id=config.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=config.max_in_flight,
        session_timeout_ms=config.session_timeout_ms,
        heartbeat_interval_ms=config.heartbeat_interval_ms,
        max_poll_interval_ms=config.max_poll_interval_ms,
        rebalance_timeout_ms=config.session_timeout_ms,
        isolation_level="read_committed",
    )
