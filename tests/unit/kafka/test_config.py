"""Kafka settings: environment variables, validation naming the key, aiokafka options."""

from __future__ import annotations

import pytest

from soc_agent.errors import ConfigError
from soc_agent.runtime.kafka.topics import topic_plan
from soc_agent.settings import load_settings


def test_environment_sets_brokers_topics_and_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOC_AGENT_KAFKA__BOOTSTRAP_SERVERS", "k1:9093,k2:9093")
    monkeypatch.setenv("SOC_AGENT_KAFKA__TOPICS__ALERTS", "edr.alerts")
    monkeypatch.setenv("SOC_AGENT_KAFKA__SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("SOC_AGENT_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("SOC_AGENT_KAFKA__SASL_PLAIN_USERNAME", "soc")
    monkeypatch.setenv("SOC_AGENT_KAFKA__SASL_PLAIN_PASSWORD", "s3cret")
    kafka = load_settings().kafka
    assert kafka.topics.alerts == "edr.alerts"
    assert "s3cret" not in repr(kafka)
    opts = kafka.client_options()
    assert opts["bootstrap_servers"] == "k1:9093,k2:9093"
    assert opts["sasl_mechanism"] == "SCRAM-SHA-512"
    assert opts["sasl_plain_password"] == "s3cret"


def test_sasl_without_a_mechanism_is_refused_naming_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOC_AGENT_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ConfigError, match="kafka"):
        load_settings()


def test_low_water_must_be_below_the_limit() -> None:
    with pytest.raises(ConfigError, match="low_water"):
        load_settings(kafka={"max_in_flight": 4, "low_water": 4})


def test_topic_plan_keeps_dlq_and_audit_longer_and_audit_in_one_partition() -> None:
    kafka = load_settings(
        kafka={"topics": {"extra_inputs": [{"name": "ids.eve", "format": "suricata"}]}}
    ).kafka
    plan = {p.name: p for p in topic_plan(kafka)}
    assert set(plan) == {
        "soc.alerts", "ids.eve", "soc.approvals", "soc.decisions", "soc.proposals",
        "soc.actions", "soc.audit", "soc.alerts.dlq", "soc.alerts.normalized", "soc.risk",
        "soc.verdicts",
        "soc-agent-stream-by-entity", "soc-agent-stream-entity-risk-changelog",
    }  # fmt: skip
    assert plan["soc-agent-stream-entity-risk-changelog"].configs == {"cleanup.policy": "compact"}
    assert plan["soc.audit"].partitions == 1
    long = int(plan["soc.alerts.dlq"].configs["retention.ms"])
    assert long == int(plan["soc.audit"].configs["retention.ms"])
    assert long > int(plan["soc.alerts"].configs["retention.ms"])
    assert kafka.topics.inputs() == {"soc.alerts": None, "ids.eve": "suricata"}


@pytest.mark.parametrize("token", ["", "   ", "\n", "short-token"])
def test_the_webhook_refuses_to_start_with_an_empty_or_short_token(token: str) -> None:
    """hmac.compare_digest(b"", b"") is true: an empty token would open the webhook to all."""
    from typing import cast

    from soc_agent.runtime.kafka.producer import Publisher
    from soc_agent.runtime.kafka.webhook import build_webhook_app

    settings = load_settings(kafka={"webhook_token": token})
    with pytest.raises(ConfigError, match="at least 16 characters") as caught:
        build_webhook_app(settings, cast(Publisher, None))
    assert caught.value.key == "kafka.webhook_token"
    if token.strip():
        assert token not in str(caught.value)


def test_the_webhook_token_is_trimmed_like_every_secret() -> None:
    from typing import cast

    from soc_agent.runtime.kafka.producer import Publisher
    from soc_agent.runtime.kafka.webhook import build_webhook_app

    settings = load_settings(kafka={"webhook_token": "  a-long-enough-shared-token\n"})
    assert build_webhook_app(settings, cast(Publisher, None)) is not None
