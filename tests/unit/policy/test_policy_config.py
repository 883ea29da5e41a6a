"""Policy configuration: protected-asset patterns, budgets, expiry, urgency, validation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from soc_agent.models import Entity, EntityType, RiskTier, Severity
from soc_agent.policy import (
    BlastRadiusBudget,
    PolicyConfig,
    ProtectedAssets,
    budget_for,
    proposal_expiry,
    urgency,
)

PROTECTED = ProtectedAssets(
    hosts=["DC-*", "srv-pay-??.corp.example"],
    users=["svc-*", "Administrator", "ceo"],
    ips=["10.0.0.0/24", "192.0.2.7", "2001:db8::/32"],
    domains=["corp.example", "*.payments.example"],
    emails=["*@board.corp.example"],
)


def _e(kind: EntityType, value: str) -> Entity:
    return Entity(type=kind, value=value)


@pytest.mark.parametrize(
    ("entity", "pattern"),
    [
        (_e(EntityType.HOST, "dc-01.corp.example"), "DC-*"),
        (_e(EntityType.HOST, "SRV-PAY-07.corp.example"), "srv-pay-??.corp.example"),
        (_e(EntityType.HOST, "srv-pay-107.corp.example"), None),
        (_e(EntityType.HOST, "ws-0142"), None),
        (_e(EntityType.HOST, "10.0.0.9"), "10.0.0.0/24"),
        (_e(EntityType.USER, "svc-backup"), "svc-*"),
        (_e(EntityType.USER, "administrator"), "Administrator"),
        (_e(EntityType.USER, "corp\\administrator"), "Administrator"),
        (_e(EntityType.USER, "ceo@corp.example"), "ceo"),
        (_e(EntityType.USER, "j.doe@board.corp.example"), "*@board.corp.example"),
        (_e(EntityType.USER, "j.doe"), None),
        (_e(EntityType.IP, "10.0.0.200"), "10.0.0.0/24"),
        (_e(EntityType.IP, "10.0.1.1"), None),
        (_e(EntityType.IP, "192.0.2.7"), "192.0.2.7"),
        (_e(EntityType.IP, "192.0.2.8"), None),
        (_e(EntityType.IP, "2001:DB8::1"), "2001:db8::/32"),
        (_e(EntityType.DOMAIN, "corp.example"), "corp.example"),
        (_e(EntityType.DOMAIN, "vpn.CORP.example."), "corp.example"),
        (_e(EntityType.DOMAIN, "evilcorp.example"), None),
        (_e(EntityType.DOMAIN, "api.payments.example"), "*.payments.example"),
        (_e(EntityType.DOMAIN, "payments.example"), None),
        (_e(EntityType.URL, "https://sso.corp.example/login"), "corp.example"),
        (_e(EntityType.URL, "http://10.0.0.5:8080/x"), "10.0.0.0/24"),
        (_e(EntityType.URL, "https://evil.example/corp.example"), None),
        (_e(EntityType.EMAIL, "Chair@Board.corp.example"), "*@board.corp.example"),
        (_e(EntityType.EMAIL, "someone@corp.example"), None),
        (_e(EntityType.FILE_HASH, "d41d8cd98f00b204e9800998ecf8427e"), None),
    ],
)
def test_protected_assets_match(entity: Entity, pattern: str | None) -> None:
    assert PROTECTED.matches(entity) == pattern


@pytest.mark.parametrize(
    ("field", "value"),
    [("ips", ["10.0.0.0/33"]), ("ips", ["not-an-ip"]), ("hosts", ["  "]), ("domains", ["."])],
)
def test_protected_assets_reject_bad_patterns(field: str, value: list[str]) -> None:
    with pytest.raises(ValidationError, match=field):
        ProtectedAssets.model_validate({field: value})


def test_protected_cidr_is_normalised_not_strict() -> None:
    assets = ProtectedAssets(ips=["10.0.0.7/24"])
    assert assets.ips == ["10.0.0.0/24"]


def test_empty_protected_assets_match_nothing() -> None:
    assert ProtectedAssets().matches(_e(EntityType.HOST, "dc-01")) is None


# -- budgets ------------------------------------------------------------------------------


def test_budget_for_exact_name_then_default() -> None:
    config = PolicyConfig(
        blast_radius={
            "*": BlastRadiusBudget(max_executions=5, window_seconds=600),
            "disable_user": BlastRadiusBudget(max_executions=2, window_seconds=86400),
        }
    )
    assert budget_for("disable_user", config) == BlastRadiusBudget(
        max_executions=2, window_seconds=86400
    )
    assert budget_for("isolate_host", config) == BlastRadiusBudget(
        max_executions=5, window_seconds=600
    )


def test_default_budget_is_ten_an_hour() -> None:
    assert budget_for("block_ip", PolicyConfig()) == BlastRadiusBudget(
        max_executions=10, window_seconds=3600
    )


def test_default_budget_survives_a_config_without_star() -> None:
    config = PolicyConfig.model_validate(
        {"blast_radius": {"disable_user": {"max_executions": 1, "window_seconds": 60}}}
    )
    assert budget_for("isolate_host", config).max_executions == 10
    assert "*" in config.blast_radius


@pytest.mark.parametrize(
    "budget",
    [{"max_executions": -1, "window_seconds": 60}, {"max_executions": 1, "window_seconds": 0}],
)
def test_budget_validation(budget: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        BlastRadiusBudget.model_validate(budget)


# -- proposal expiry ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        (Severity.CRITICAL, timedelta(hours=1)),
        (Severity.HIGH, timedelta(hours=1)),
        (Severity.MEDIUM, timedelta(hours=12)),
        (Severity.LOW, timedelta(hours=24)),
        (Severity.INFORMATIONAL, timedelta(hours=24)),
    ],
)
def test_proposal_expiry_defaults(severity: Severity, expected: timedelta) -> None:
    assert proposal_expiry(severity, PolicyConfig()) == expected


def test_proposal_expiry_partial_override_keeps_other_defaults() -> None:
    config = PolicyConfig.model_validate({"proposal_expiry_seconds": {"high": 900}})
    assert proposal_expiry(Severity.HIGH, config) == timedelta(minutes=15)
    assert proposal_expiry(Severity.MEDIUM, config) == timedelta(hours=12)
    assert config.proposal_expiry_seconds[Severity.LOW] == 86400  # merged, visible in dumps


def test_proposal_expiry_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="proposal_expiry_seconds"):
        PolicyConfig.model_validate({"proposal_expiry_seconds": {"low": 0}})


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        {"unknown_knob": True},
        {"review_sample_rate": 1.5},
        {"review_sample_rate": -0.1},
        {"edge_margin": -1},
        {"default_propose_at": 95, "default_execute_at": 90},
        {"four_eyes_min_risk": "extreme"},
    ],
)
def test_invalid_config_is_rejected(data: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        PolicyConfig.model_validate(data)


def test_defaults_match_the_design() -> None:
    config = PolicyConfig()
    assert config.four_eyes_actions == ["disable_user"]
    assert config.four_eyes_min_risk is RiskTier.HIGH
    assert (config.default_propose_at, config.default_execute_at) == (60, 90)
    assert config.kill_switch is False


def test_mutable_defaults_are_not_shared() -> None:
    first, second = PolicyConfig(), PolicyConfig()
    first.four_eyes_actions.append("isolate_host")
    first.protected.hosts.append("dc-*")
    assert second.four_eyes_actions == ["disable_user"]
    assert second.protected.hosts == []


# -- urgency ------------------------------------------------------------------------------


def test_urgency_formula() -> None:
    # 0.5 * severity score + 0.35 * clamp(score) + 0.15 * criticality score
    assert urgency(Severity.HIGH, 80, "high") == pytest.approx(0.5 * 75 + 0.35 * 80 + 0.15 * 75)
    assert urgency(Severity.CRITICAL, 100, "critical") == pytest.approx(97.5)
    assert urgency(Severity.INFORMATIONAL, 0, "low") == pytest.approx(5 + 3.75)


def test_urgency_orders_by_severity_then_score_then_criticality() -> None:
    assert urgency(Severity.CRITICAL, 60, "low") > urgency(Severity.MEDIUM, 95, "high")
    assert urgency(Severity.HIGH, 90, "medium") > urgency(Severity.HIGH, 70, "medium")
    assert urgency(Severity.HIGH, 80, "critical") > urgency(Severity.HIGH, 80, "low")


def test_urgency_tolerates_odd_inputs() -> None:
    assert urgency(Severity.HIGH, 250, "unheard-of") == urgency(Severity.HIGH, 100, "medium")
    assert urgency(Severity.HIGH, -5, "MEDIUM") == urgency(Severity.HIGH, 0, "medium")
    assert urgency(Severity.HIGH, float("nan"), "medium") == urgency(Severity.HIGH, 0, "medium")


def test_protection_holds_whatever_name_the_target_goes_by() -> None:
    # The CEO's account is protected by its short name; an alert that names only the UPN
    # (with the short name as an alias) must not slip past the guardrail.
    ceo = Entity(
        type=EntityType.USER,
        value="c.exec@corp.example.com",
        aliases={"upn": "c.exec@corp.example.com", "sam": "ceo"},
    )
    assert PROTECTED.matches(ceo) == "ceo"
    dc = Entity(type=EntityType.HOST, value="host-7f3a", aliases={"fqdn": "dc-02.corp.example"})
    assert PROTECTED.matches(dc) == "DC-*"
    plain = Entity(type=EntityType.USER, value="j.doe", aliases={"sid": "s-1-5-21-1-2-3-1104"})
    assert PROTECTED.matches(plain) is None
