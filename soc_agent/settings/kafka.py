"""Kafka settings: brokers, the topic contract's names, security and bounds.

Part of the one settings model (`Settings.kafka`), so every key has an
environment variable: `SOC_AGENT_KAFKA__BOOTSTRAP_SERVERS`,
`SOC_AGENT_KAFKA__TOPICS__ALERTS`, `SOC_AGENT_KAFKA__SASL_PLAIN_PASSWORD`, ...
Security settings are passed through to aiokafka unchanged.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = [
    "MIN_APPROVALS_KEY_LENGTH",
    "InputTopic",
    "KafkaConfig",
    "TopicLayout",
    "TopicsConfig",
]

MIN_APPROVALS_KEY_LENGTH = 32

_DAY_MS = 24 * 3600 * 1000


class InputTopic(BaseModel):
    """An extra topic of raw alerts, with an optional format hint (e.g. `suricata`)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=249)
    format: str | None = Field(default=None, description="format hint, as `run --format`")


class TopicsConfig(BaseModel):
    """Topic names; the defaults are the documented contract."""

    model_config = ConfigDict(extra="forbid")
    alerts: str = "soc.alerts"
    alerts_format: str | None = Field(default=None, description="format hint for `alerts`")
    approvals: str = "soc.approvals"
    decisions: str = "soc.decisions"
    proposals: str = "soc.proposals"
    actions: str = "soc.actions"
    audit: str = "soc.audit"
    dlq: str = "soc.alerts.dlq"
    alerts_normalized: str = Field(
        default="soc.alerts.normalized",
        description="every canonical alert the workers decided, for the stream app",
    )
    risk: str = Field(default="soc.risk", description="entity risk updates from the stream app")
    verdicts: str = Field(
        default="soc.verdicts",
        description="incidents closed by analysts with their verdicts (signed): the API "
        "exports each closing, workers apply the ones not yet kept",
    )
    extra_inputs: list[InputTopic] = Field(default_factory=list)

    def inputs(self) -> dict[str, str | None]:
        """Alert topic -> format hint."""
        out: dict[str, str | None] = {self.alerts: self.alerts_format}
        out.update({t.name: t.format for t in self.extra_inputs})
        return out


class TopicLayout(BaseModel):
    """What `soc-agent topics create` gives each topic it creates."""

    model_config = ConfigDict(extra="forbid")
    partitions: int = Field(default=6, ge=1, le=10_000, description="alert and output topics")
    replication_factor: int = Field(default=3, ge=1, le=32)
    retention_ms: int = Field(default=7 * _DAY_MS, ge=-1, description="alert and output topics")
    long_retention_ms: int = Field(
        default=90 * _DAY_MS, ge=-1, description="the DLQ and the audit topic"
    )
    audit_partitions: int = Field(
        default=1, ge=1, description="1 keeps the audit chain totally ordered on the topic"
    )


class KafkaConfig(BaseModel):
    """`kafka:` in the config file: brokers, topics, security, bounds and the worker's doors."""

    model_config = ConfigDict(extra="forbid")

    bootstrap_servers: str = Field(default="localhost:9092", min_length=1)
    group_id: str = Field(default="soc-agent", min_length=1, max_length=255)
    client_id: str = "soc-agent"
    topics: TopicsConfig = Field(default_factory=TopicsConfig)
    layout: TopicLayout = Field(default_factory=TopicLayout)

    # security, passed through to aiokafka
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_plain_username: str | None = None
    sasl_plain_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    # delivery and bounds
    enable_idempotence: bool = Field(
        default=True, description="idempotent producer (brokers without InitProducerId: false)"
    )
    max_in_flight: int = Field(
        default=32, ge=1, le=10_000, description="messages being processed before fetching pauses"
    )
    low_water: int | None = Field(
        default=None, ge=0, description="resume fetching at or below this; default half"
    )
    commit_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    shutdown_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    revoke_timeout_seconds: float = Field(
        default=10.0, gt=0, le=600, description="finishing time for revoked partitions' work"
    )
    session_timeout_ms: int = Field(default=10_000, ge=1000)
    heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    max_poll_interval_ms: int = Field(default=300_000, ge=1000)
    request_timeout_ms: int = Field(default=40_000, ge=1000)
    maintenance_interval_seconds: float = Field(
        default=60.0, gt=0, description="proposal expiry and auto-revert sweep"
    )

    # analysts' verdicts and closings on Kafka: signed by the door that authenticated them
    approvals_key: SecretStr | None = Field(
        default=None,
        description="HMAC key the API signs verdicts with and workers verify (32+ characters); "
        "without it every verdict on the approvals topic and every closing on the verdicts "
        "topic is dead-lettered",
    )
    approvals_previous_key: SecretStr | None = Field(
        default=None, description="the key before a rotation, still accepted by workers"
    )
    approvals_max_age_seconds: int = Field(
        default=86_400,
        ge=60,
        description="verdicts (and closings not kept yet) signed longer ago than this are refused",
    )

    # webhook ingest (POST /v1/alerts)
    webhook_token: SecretStr | None = Field(
        default=None, description="shared bearer token the webhook requires"
    )
    webhook_max_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    webhook_max_records: int = Field(
        default=1000, ge=1, le=100_000, description="records per request; more is refused (413)"
    )

    # health and metrics (GET /healthz, /readyz, /metrics); off unless a port is set
    health_port: int = Field(
        default=0, ge=0, le=65535, description="port of the health endpoint; 0 disables it"
    )
    health_host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="address it binds; loopback unless asked (the Helm chart: 0.0.0.0 in the pod)",
    )
    health_stale_seconds: float = Field(
        default=60.0, gt=0, le=3600, description="/healthz fails when the loop stalls this long"
    )
    health_probe_interval_seconds: float = Field(
        default=5.0, gt=0, le=300, description="how often /readyz's broker check runs"
    )
    commit_timeout_seconds: float = Field(
        default=15.0,
        gt=0,
        le=600,
        description="a commit (with its audit export) taking longer is retried later",
    )

    @model_validator(mode="after")
    def _check(self) -> KafkaConfig:
        if self.low_water is not None and self.low_water >= self.max_in_flight:
            raise ValueError("low_water must be below max_in_flight")
        if self.health_stale_seconds <= self.commit_timeout_seconds:
            # The loop waits up to commit_timeout_seconds for a commit: a shorter
            # liveness threshold would have a broker outage restart healthy workers.
            raise ValueError("health_stale_seconds must be above commit_timeout_seconds")
        if self.security_protocol.startswith("SASL") and self.sasl_mechanism is None:
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_mechanism")
        return self

    @property
    def resume_at(self) -> int:
        return self.low_water if self.low_water is not None else self.max_in_flight // 2

    @field_validator("approvals_key", "approvals_previous_key")
    @classmethod
    def _strong_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        key = value.get_secret_value().strip()
        if len(key) < MIN_APPROVALS_KEY_LENGTH:
            raise ValueError(
                f"must have at least {MIN_APPROVALS_KEY_LENGTH} characters "
                "(e.g. `openssl rand -hex 32`)"
            )
        return SecretStr(key)

    def approvals_keys(self) -> list[bytes]:
        """The keys a verdict's signature may verify with, current first."""
        return [
            k.get_secret_value().encode()
            for k in (self.approvals_key, self.approvals_previous_key)
            if k is not None
        ]

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments every aiokafka client gets: brokers and security."""
        opts: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            opts["ssl_context"] = self._ssl_context()
        if self.sasl_mechanism is not None:
            opts["sasl_mechanism"] = self.sasl_mechanism
            opts["sasl_plain_username"] = self.sasl_plain_username
            if self.sasl_plain_password is not None:
                opts["sasl_plain_password"] = self.sasl_plain_password.get_secret_value()
        return opts

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
        if self.ssl_certfile is not None:
            ctx.load_cert_chain(
                str(self.ssl_certfile), str(self.ssl_keyfile) if self.ssl_keyfile else None
            )
        return ctx
