"""`soc-agent topics create`: the topics of the contract, created if missing."""

from __future__ import annotations

from dataclasses import dataclass

from soc_agent.runtime.kafka.errors import KafkaUnavailable
from soc_agent.settings.kafka import KafkaConfig

__all__ = [
    "TopicPlan",
    "create_topics",
    "partitions_of",
    "stream_app_id",
    "stream_topics",
    "topic_plan",
]


@dataclass(frozen=True)
class TopicPlan:
    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str]


def topic_plan(config: KafkaConfig) -> list[TopicPlan]:
    """Every topic with its layout: the DLQ and audit keep records longer; audit keeps order."""
    layout = config.layout
    t = config.topics
    normal = {"retention.ms": str(layout.retention_ms), "cleanup.policy": "delete"}
    long = {"retention.ms": str(layout.long_retention_ms), "cleanup.policy": "delete"}
    rf = layout.replication_factor
    plans = [TopicPlan(name, layout.partitions, rf, normal) for name in t.inputs()]
    plans += [
        TopicPlan(t.approvals, layout.partitions, rf, normal),
        TopicPlan(t.decisions, layout.partitions, rf, normal),
        TopicPlan(t.proposals, layout.partitions, rf, normal),
        TopicPlan(t.actions, layout.partitions, rf, normal),
        TopicPlan(t.audit, layout.audit_partitions, rf, long),
        TopicPlan(t.dlq, layout.partitions, rf, long),
        TopicPlan(t.alerts_normalized, layout.partitions, rf, normal),
        TopicPlan(t.risk, layout.partitions, rf, normal),
        TopicPlan(t.verdicts, layout.partitions, rf, long),
        *stream_topics(config),
    ]
    return plans


def stream_app_id(config: KafkaConfig) -> str:
    """The stream app's faust id: its consumer group and the prefix of its own topics."""
    return f"{config.group_id}-stream"


def stream_topics(config: KafkaConfig) -> list[TopicPlan]:
    """The stream app's own topics: alerts re-keyed by entity, and its table's changelog
    (compacted: the latest state of each entity is all a recovering app needs)."""
    layout, app_id = config.layout, stream_app_id(config)
    rf = layout.replication_factor
    keyed = {"retention.ms": str(layout.retention_ms), "cleanup.policy": "delete"}
    return [
        TopicPlan(f"{app_id}-by-entity", layout.partitions, rf, keyed),
        TopicPlan(
            f"{app_id}-entity-risk-changelog", layout.partitions, rf, {"cleanup.policy": "compact"}
        ),
    ]


async def create_topics(
    config: KafkaConfig, plans: list[TopicPlan] | None = None
) -> dict[str, str]:
    """Create the missing topics (of the contract, or `plans`); returns topic ->
    "created" | "exists"."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(**config.client_options())
    try:
        await admin.start()
    except KafkaError as exc:
        raise KafkaUnavailable(
            f"cannot connect to Kafka at {config.bootstrap_servers}: {exc}"
        ) from None
    try:
        existing = set(await admin.list_topics())
        plans = plans if plans is not None else topic_plan(config)
        missing = [p for p in plans if p.name not in existing]
        result = {p.name: "exists" for p in plans if p.name in existing}
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(p.name, p.partitions, p.replication_factor, topic_configs=p.configs)
                    for p in missing
                ]
            )
            for name, code, message in _errors(response):
                if code == 36:  # TOPIC_ALREADY_EXISTS: another worker created it first
                    result[name] = "exists"
                elif code != 0:
                    raise KafkaUnavailable(f"cannot create topic {name}: {message or code}")
                else:
                    result[name] = "created"
        return result
    finally:
        await admin.close()


def _errors(response: object) -> list[tuple[str, int, str | None]]:
    out: list[tuple[str, int, str | None]] = []
    for entry in getattr(response, "topic_errors", []):
        name, code = entry[0], int(entry[1])
        message = entry[2] if len(entry) > 2 else None
        out.append((name, code, message))
    return out


async def partitions_of(config: KafkaConfig, topic: str) -> list[int]:
    """The topic's partition numbers, from the brokers (empty when it does not exist).

    Asked of the admin client: a consumer outside a group knows the partitions only of
    topics it was told about (Apache Kafka leaves `partitions_for_topic` empty there).
    """
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**config.client_options())
    await admin.start()
    try:
        if topic not in set(await admin.list_topics()):
            return []
        (described,) = await admin.describe_topics([topic])
        return sorted(int(p["partition"]) for p in described["partitions"])
    finally:
        await admin.close()
