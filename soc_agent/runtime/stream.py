"""`soc-agent stream`: entity risk over Kafka, a faust-streaming app beside the workers.

Workers publish every canonical alert they decided to `soc.alerts.normalized`
(keyed by alert id). The app re-keys each alert by the entities that gather
risk (an internal topic keyed by entity, co-partitioned with the table), keeps
each entity's `EntityRisk` in a table whose changelog is a compacted Kafka
topic, and publishes every update to `soc.risk` and every risk record raised
to `soc.alerts`, where the workers decide it like any alert.

At-least-once, on purpose: faust's exactly-once mode lost and double-counted
records after SIGKILL. The state is idempotent instead (contributions keyed
by alert id), so a redelivered alert adds nothing and a re-raised risk record
carries the same id, recognised as a redelivery downstream. faust's consumer
may still skip a few records of a partition around a rebalance (`Contiguous`):
each agent reads those from the topic itself before it goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faust.types import StreamT
from pydantic import ValidationError

from soc_agent.models import Alert
from soc_agent.playbooks.context import alert_context
from soc_agent.risk import RiskConfig
from soc_agent.risk.ledger import (
    UNKNOWN,
    EntityRisk,
    risk_entities,
    risk_record_id,
    window_starts,
)
from soc_agent.runtime.confinement import check_settings_confined
from soc_agent.runtime.kafka.errors import KafkaUnavailable
from soc_agent.runtime.kafka.topics import create_topics, stream_app_id, stream_topics
from soc_agent.runtime.risk import load_risk
from soc_agent.settings import Settings
from soc_agent.settings.kafka import KafkaConfig

__all__ = [
    "Contiguous",
    "StreamCounters",
    "build_stream_app",
    "ensure_stream_topics",
    "read_offsets",
    "run_stream",
]

logger = logging.getLogger(__name__)


class StreamCounters:
    """What the app did since it started, for its metrics page."""

    def __init__(self) -> None:
        self.alerts = 0
        self.updates = 0
        self.raised = 0
        self.rejected = 0  # records on the input topic that are no canonical alert
        self.repaired = 0  # records the consumer skipped, read from the topic instead


Records = list[tuple[bytes | None, bytes | None]]  # (key, value) of each record, in order
Reader = Callable[[str, int, int, int], Awaitable[Records]]  # topic, partition, start, end


class Contiguous:
    """Each partition's records handled in offset order, none skipped.

    faust-streaming 0.15's consumer can skip records around a rebalance: a fetched
    record ahead of the committed offset makes it note the offsets in between as a gap,
    acknowledge them (so they are committed), and drop those records when they come
    (`Consumer._drain_messages`). An alert on one would never count. Each agent hands
    every event's partition and offset to `missing` and handles the records it returns,
    read from the topic, before the event. A step back (a replay from the committed
    offset after a rebalance) needs nothing: handling a record again changes nothing.
    """

    def __init__(self, read: Reader, counters: StreamCounters) -> None:
        self._read = read
        self._counters = counters
        self._last: dict[tuple[str, int], int] = {}  # last offset handled, per partition

    def keep_only(self, assigned: Iterable[tuple[str, int]]) -> None:
        """After a rebalance: forget the partitions this app no longer has (another
        app's records there are no gap when one comes back)."""
        kept = set(assigned)
        self._last = {tp: offset for tp, offset in self._last.items() if tp in kept}

    async def missing(self, topic: str, partition: int, offset: int) -> Records:
        last = self._last.get((topic, partition))
        self._last[(topic, partition)] = offset
        if last is None or offset <= last + 1:
            return []
        logger.warning(
            "the consumer skipped offsets %d-%d of %s[%d]: reading them from the topic",
            last + 1,
            offset - 1,
            topic,
            partition,
        )
        records = await self._read(topic, partition, last + 1, offset)
        self._counters.repaired += len(records)
        return records


async def read_offsets(
    kafka: KafkaConfig, topic: str, partition: int, start: int, end: int, *, within: float = 30.0
) -> Records:
    """The records of one partition from `start` up to `end` (from the earliest one kept,
    if retention removed some)."""
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(
        **kafka.client_options(), enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    out: Records = []
    try:
        consumer.assign([tp])
        consumer.seek(tp, start)
        deadline = time.monotonic() + within
        while await consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"could not read {topic}[{partition}] {start}-{end - 1}")
            batch = await consumer.getmany(tp, timeout_ms=500)
            out += [(r.key, r.value) for r in batch.get(tp, []) if r.offset < end]
    finally:
        await consumer.stop()
    return out


def _credentials(kafka: KafkaConfig) -> Any:
    """The broker security of the workers' settings, as faust takes it."""
    options = kafka.client_options()
    context = options.get("ssl_context")
    if kafka.sasl_mechanism is not None:
        return faust.SASLCredentials(
            username=options.get("sasl_plain_username"),
            password=options.get("sasl_plain_password"),
            ssl_context=context,
            mechanism=kafka.sasl_mechanism,
        )
    return faust.SSLCredentials(context) if context is not None else None


def build_stream_app(
    settings: Settings,
    *,
    data_dir: Path,
    web_host: str = "127.0.0.1",
    web_port: int = 6066,
    counters: StreamCounters | None = None,
) -> faust.App:
    """The faust app; its web server (health, metrics) binds to `web_host` only (loopback
    unless told otherwise)."""
    kafka, config = settings.kafka, settings.risk
    rules, assets = load_risk(settings)
    counters = counters or StreamCounters()
    partitions = kafka.layout.partitions
    app = faust.App(
        stream_app_id(kafka),
        broker=[f"kafka://{server.strip()}" for server in kafka.bootstrap_servers.split(",")],
        broker_credentials=_credentials(kafka),
        store="memory://",  # rebuilt from the changelog topic on start and on rebalance
        datadir=str(data_dir),
        processing_guarantee="at_least_once",
        topic_partitions=partitions,
        topic_replication_factor=kafka.layout.replication_factor,
        table_standby_replicas=1,
        web_enabled=True,
        web_bind=web_host,
        web_host=web_host,
        web_port=web_port,
        producer_acks=-1,
        # The workers' group timing, so a dead member's partitions move as fast.
        broker_session_timeout=kafka.session_timeout_ms / 1000,
        broker_heartbeat_interval=kafka.heartbeat_interval_ms / 1000,
        broker_max_poll_interval=kafka.max_poll_interval_ms / 1000,
        broker_commit_interval=kafka.commit_interval_seconds,
        key_serializer="raw",
        value_serializer="raw",
    )
    normalized = app.topic(kafka.topics.alerts_normalized)
    by_entity = app.topic(f"{app.conf.id}-by-entity", partitions=partitions, internal=True)
    # The table's changelog is `<id>-entity-risk-changelog` (faust's naming), as planned
    # in stream_topics.
    alerts_out = app.topic(kafka.topics.alerts)
    risk_out = app.topic(kafka.topics.risk)
    table = app.Table(
        "entity-risk",
        default=None,
        partitions=partitions,
        # JSON keys and values: faust's recovery reads the changelog with the table's
        # serializers, and raw keys came back as JSON parse errors.
        schema=faust.Schema(key_type=str, key_serializer="json", value_serializer="json"),
    )

    decoded = _Decoded()

    contiguous = Contiguous(partial(read_offsets, kafka), counters)

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        (assigned,) = args  # the partitions of the new assignment
        contiguous.keep_only((tp.topic, tp.partition) for tp in assigned)

    async def with_skipped(event: Any) -> list[tuple[Any, Any]]:
        """The records the consumer skipped before this event, then the event's own."""
        message = event.message
        skipped = await contiguous.missing(message.topic, message.partition, message.offset)
        return [*skipped, (event.key, event.value)]

    @app.agent(normalized)
    async def fan_out(stream: StreamT[Any]) -> None:
        """Each alert to every entity that gathers risk, keyed by the entity."""
        async for event in stream.events():
            for _, value in await with_skipped(event):
                await fan_out_one(value)

    async def fan_out_one(value: bytes | None) -> None:
        alert = _alert(value, counters)
        if alert is None:
            return
        counters.alerts += 1
        for entity in risk_entities(alert, config):
            await by_entity.send(key=entity.key.encode(), value=value)

    @app.agent(by_entity)
    async def accumulate(stream: StreamT[Any]) -> None:
        """One entity's risk: add the alert, keep the state, publish what changed."""
        async for event in stream.events():
            for key, value in await with_skipped(event):
                await accumulate_one(bytes(key).decode(), value)

    async def accumulate_one(key: str, value: bytes | None) -> None:
        alert = _alert(value, counters)
        if alert is None:
            return
        entity = next((e for e in risk_entities(alert, config) if e.key == key), None)
        if entity is None:
            return
        stored = table.get(key)
        state = decoded.get(key, stored)
        criticality = assets.get(key, UNKNOWN)
        raised = state.add(
            alert,
            rules.alert_view(alert_context(alert)),
            entity,
            rules,
            config,
            criticality=criticality,
        )
        table[key] = decoded.put(key, state)
        counters.updates += 1
        for record in raised:
            counters.raised += 1
            body = json.dumps(record).encode()
            await alerts_out.send(key=record["soc_risk"]["id"].encode(), value=body)
        update = _update(state, alert, config)
        await risk_out.send(key=key.encode(), value=json.dumps(update).encode())

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        """Ready once its partitions are assigned and its table recovered from the
        changelog, and not while a rebalance moves them."""
        recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        ready = recovered and not app.rebalancing and not app.in_recovery
        body = {
            "status": "ready" if ready else "not ready",
            "recovered": recovered,
            "rebalancing": bool(app.rebalancing),
            "assigned_partitions": len(app.consumer.assignment()) if ready else 0,
        }
        return web.json(body, status=200 if ready else 503)

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        lines = [
            f"soc_stream_alerts_total {counters.alerts}",
            f"soc_stream_risk_updates_total {counters.updates}",
            f"soc_stream_risk_alerts_total {counters.raised}",
            f"soc_stream_records_rejected_total {counters.rejected}",
            f"soc_stream_records_repaired_total {counters.repaired}",
        ]
        return web.text("\n".join(lines) + "\n")

    del on_assigned, fan_out, accumulate, healthz, readyz, metrics  # registered on the app
    return app


class _Decoded:
    """The states this app wrote, decoded, so an update need not parse its entity's state
    again. A state is reused only while the table still holds the very value written
    with it: after a recovery or another worker's update it is parsed afresh."""

    def __init__(self, limit: int = 50_000) -> None:
        self._limit = limit
        self._states: dict[str, tuple[dict[str, Any], EntityRisk]] = {}

    def get(self, key: str, stored: dict[str, Any] | None) -> EntityRisk:
        cached = self._states.get(key)
        if cached is not None and stored is cached[0]:
            return cached[1]
        return EntityRisk.from_json(stored) if stored else EntityRisk(key)

    def put(self, key: str, state: EntityRisk) -> dict[str, Any]:
        value = state.to_json()
        if len(self._states) >= self._limit and key not in self._states:
            self._states.pop(next(iter(self._states)))
        self._states[key] = (value, state)
        return value


def _alert(value: bytes | None, counters: StreamCounters) -> Alert | None:
    try:
        return Alert.model_validate_json(value or b"")
    except ValidationError as exc:
        counters.rejected += 1
        logger.warning("not a canonical alert on the input topic: %s", exc.errors()[0]["msg"])
        return None


def _update(state: EntityRisk, alert: Alert, config: RiskConfig) -> dict[str, Any]:
    """The `soc.risk` record: the entity's risk in the window the alert counted toward."""
    start = window_starts(int(alert.created_at.timestamp()), config)[0]
    found = state.lookup(start, config)
    last = state.last_raised
    return {
        "entity": state.key,
        "alert_id": alert.id,
        "window_start": found["window_start"],
        "window_end": found["window_end"],
        "total": found["total"],
        "threshold": config.threshold,
        "alert_count": found["alert_count"],
        "raised": None if last is None else risk_record_id(state.key, last),
        "contributions": found["contributions"][:10],
    }


async def ensure_stream_topics(kafka: KafkaConfig, *, within: float = 30.0) -> None:
    """Create the app's own topics before it subscribes, and wait until the broker lists
    them: faust assigns no partitions of a topic that was missing at its first rebalance,
    and would then report ready while never reading it."""
    plans = stream_topics(kafka)
    await create_topics(kafka, plans)
    deadline = time.monotonic() + within
    admin = AIOKafkaAdminClient(**kafka.client_options())
    await admin.start()
    try:
        while not {p.name for p in plans} <= set(await admin.list_topics()):
            if time.monotonic() > deadline:
                raise KafkaUnavailable("the stream app's topics were created but not listed")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


def run_stream(settings: Settings, *, web_host: str, web_port: int) -> None:
    """Run the app until SIGINT/SIGTERM (faust's worker owns the event loop). Its data
    directory is private and temporary: the state lives in the changelog topic."""
    check_settings_confined(settings)  # the asset file, as the workers check theirs
    asyncio.run(ensure_stream_topics(settings.kafka))
    data_dir = Path(tempfile.mkdtemp(prefix="soc-agent-stream-"))
    app = build_stream_app(settings, data_dir=data_dir, web_host=web_host, web_port=web_port)
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), redirect_stdouts=False)
    worker.execute_from_commandline()
