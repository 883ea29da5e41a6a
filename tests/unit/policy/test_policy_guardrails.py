"""Guardrails: enforced outside any playbook, and they always win over an execution."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from soc_agent.models import AutonomyLevel, Disposition, Entity, EntityType, RiskTier
from soc_agent.policy import (
    BlastRadiusBudget,
    PolicyConfig,
    PolicyInput,
    ProtectedAssets,
    decide,
)

D = Disposition
OBSERVER = PolicyConfig(agent_autonomy=AutonomyLevel.OBSERVER)
Factory = Callable[..., PolicyInput]


def _observer(**kwargs: object) -> PolicyConfig:
    return PolicyConfig.model_validate({"agent_autonomy": 5, **kwargs})


def test_baseline_executes_at_level_5(make_input: Factory) -> None:
    verdict = decide(make_input(97.0), OBSERVER)
    assert (verdict.disposition, verdict.rule) == (D.EXECUTED, "threshold.execute")
    assert verdict.guardrails == ()


# -- access: deny list and scopes -------------------------------------------------------


@pytest.mark.parametrize("score", [5.0, 45.0, 72.0, 97.0])
def test_deny_list_denies_at_any_score(make_input: Factory, score: float) -> None:
    config = _observer(deny_actions=["isolate_host"])
    verdict = decide(make_input(score, notify_at=30), config)
    assert (verdict.disposition, verdict.rule) == (D.DENIED, "guardrail.deny_list")
    assert "isolate_host" in verdict.reason


def test_deny_list_only_hits_listed_actions(make_input: Factory) -> None:
    verdict = decide(make_input(97.0), _observer(deny_actions=["disable_user"]))
    assert verdict.disposition is D.EXECUTED


def test_not_granted_denies_and_names_missing_scopes(make_input: Factory) -> None:
    inp = make_input(97.0, granted=False, missing_scopes=("hosts:contain", "hosts:write"))
    verdict = decide(inp, OBSERVER)
    assert (verdict.disposition, verdict.rule) == (D.DENIED, "guardrail.not_granted")
    assert "hosts:contain" in verdict.reason
    assert "hosts:write" in verdict.reason
    assert "crowdstrike" in verdict.reason


def test_deny_list_is_checked_before_scopes(make_input: Factory) -> None:
    verdict = decide(make_input(97.0, granted=False), _observer(deny_actions=["isolate_host"]))
    assert verdict.rule == "guardrail.deny_list"


def test_denial_wins_over_incomplete_investigation(make_input: Factory) -> None:
    verdict = decide(make_input(97.0, granted=False, concluded=False), OBSERVER)
    assert verdict.rule == "guardrail.not_granted"


# -- protected assets -------------------------------------------------------------------


def test_protected_by_inventory_flag(make_input: Factory) -> None:
    verdict = decide(make_input(97.0, target_protected=True), OBSERVER)
    assert (verdict.disposition, verdict.rule) == (D.PROPOSED, "guardrail.protected_asset")
    assert verdict.blast_radius["protected"] is True


def test_protected_by_host_glob_case_insensitive(make_input: Factory) -> None:
    config = _observer(protected={"hosts": ["ws-01*.CORP.example"]})
    verdict = decide(make_input(97.0), config)
    assert (verdict.disposition, verdict.rule) == (D.PROPOSED, "guardrail.protected_asset")
    assert "ws-01*.CORP.example" in verdict.reason


def test_protected_by_cidr(make_input: Factory) -> None:
    target = Entity(type=EntityType.IP, value="10.20.3.17")
    config = _observer(protected={"ips": ["10.20.0.0/16"]})
    verdict = decide(make_input(97.0, action="block_ip", target=target), config)
    assert (verdict.disposition, verdict.rule) == (D.PROPOSED, "guardrail.protected_asset")
    assert "10.20.0.0/16" in verdict.reason
    outside = Entity(type=EntityType.IP, value="10.21.3.17")
    assert decide(make_input(97.0, action="block_ip", target=outside), config).disposition is (
        D.EXECUTED
    )


def test_unprotected_pattern_does_not_fire(make_input: Factory) -> None:
    config = _observer(protected={"hosts": ["dc-*"], "users": ["svc-*"]})
    assert decide(make_input(97.0), config).disposition is D.EXECUTED


# -- reversibility -----------------------------------------------------------------------


def test_irreversible_is_proposed(make_input: Factory) -> None:
    verdict = decide(make_input(97.0, reversible=False, rollback=None), OBSERVER)
    assert (verdict.disposition, verdict.rule) == (D.PROPOSED, "guardrail.irreversible")


def test_reversible_without_rollback_capability_counts_as_irreversible(
    make_input: Factory,
) -> None:
    verdict = decide(make_input(97.0, reversible=True, rollback=None), OBSERVER)
    assert (verdict.disposition, verdict.rule) == (D.PROPOSED, "guardrail.irreversible")
    assert "rollback" in verdict.reason


# -- four eyes ---------------------------------------------------------------------------


def test_four_eyes_by_action_name(make_input: Factory) -> None:
    user = Entity(type=EntityType.USER, value="j.doe@corp.example")
    verdict = decide(make_input(97.0, action="disable_user", target=user), OBSERVER)
    assert (verdict.disposition, verdict.rule) == (D.PROPOSED, "guardrail.four_eyes")
    assert verdict.required_approvals == 2


@pytest.mark.parametrize(
    ("risk", "min_risk", "fires"),
    [
        (RiskTier.HIGH, RiskTier.HIGH, True),
        (RiskTier.MEDIUM, RiskTier.HIGH, False),
        (RiskTier.MEDIUM, RiskTier.MEDIUM, True),
        (RiskTier.LOW, RiskTier.MEDIUM, False),
        (RiskTier.LOW, RiskTier.LOW, True),
        (RiskTier.HIGH, None, False),
    ],
)
def test_four_eyes_by_risk(
    make_input: Factory, risk: RiskTier, min_risk: RiskTier | None, fires: bool
) -> None:
    config = _observer(four_eyes_min_risk=min_risk, four_eyes_actions=[])
    verdict = decide(make_input(97.0, risk=risk), config)
    if fires:
        assert (verdict.disposition, verdict.rule) == (D.PROPOSED, "guardrail.four_eyes")
        assert verdict.required_approvals == 2
    else:
        assert verdict.disposition is D.EXECUTED
        assert verdict.required_approvals == 1


@pytest.mark.parametrize(
    ("level", "score", "rule"),
    [
        (AutonomyLevel.APPROVER, 72.0, "threshold.propose"),
        (AutonomyLevel.COLLABORATOR, 97.0, "autonomy.collaborator"),
        (AutonomyLevel.OBSERVER, 97.0, "guardrail.four_eyes"),
    ],
)
def test_four_eyes_needs_two_approvals_on_every_proposal(
    make_input: Factory, level: AutonomyLevel, score: float, rule: str
) -> None:
    config = PolicyConfig(agent_autonomy=level)
    verdict = decide(make_input(score, action="disable_user"), config)
    assert (verdict.disposition, verdict.rule) == (D.PROPOSED, rule)
    assert verdict.required_approvals == 2


def test_four_eyes_needs_two_approvals_on_escalations(make_input: Factory) -> None:
    verdict = decide(make_input(97.0, action="disable_user", concluded=False), OBSERVER)
    assert verdict.disposition is D.ESCALATED
    assert verdict.required_approvals == 2


def test_four_eyes_does_not_apply_to_notifications(make_input: Factory) -> None:
    config = PolicyConfig(agent_autonomy=AutonomyLevel.OPERATOR)
    verdict = decide(make_input(97.0, action="disable_user"), config)
    assert verdict.disposition is D.NOTIFIED
    assert verdict.required_approvals == 1


# -- blast radius ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("used", "disposition"),
    [(0, D.EXECUTED), (2, D.EXECUTED), (3, D.PROPOSED), (4, D.PROPOSED)],
)
def test_blast_radius_budget_max_minus_one_vs_max(
    make_input: Factory, used: int, disposition: Disposition
) -> None:
    config = _observer(blast_radius={"isolate_host": {"max_executions": 3, "window_seconds": 3600}})
    verdict = decide(make_input(97.0, executions_in_window=used), config)
    assert verdict.disposition is disposition
    if disposition is D.PROPOSED:
        assert verdict.rule == "guardrail.blast_radius"
        assert "3 of 3" in verdict.reason or f"{used} of 3" in verdict.reason
    assert verdict.blast_radius["budget"] == {
        "action": "isolate_host",
        "max_executions": 3,
        "window_seconds": 3600,
        "used": used,
        "remaining": max(0, 3 - used),
    }


def test_blast_radius_default_budget_applies_to_unlisted_actions(make_input: Factory) -> None:
    assert decide(make_input(97.0, executions_in_window=9), OBSERVER).disposition is D.EXECUTED
    verdict = decide(make_input(97.0, executions_in_window=10), OBSERVER)
    assert verdict.rule == "guardrail.blast_radius"


def test_zero_budget_never_executes(make_input: Factory) -> None:
    config = _observer(blast_radius={"*": BlastRadiusBudget(max_executions=0, window_seconds=60)})
    assert decide(make_input(97.0), config).rule == "guardrail.blast_radius"


def test_blast_radius_dict_describes_the_target(make_input: Factory) -> None:
    verdict = decide(
        make_input(97.0, criticality="HIGH", dependents=14, known=True, executions_in_window=2),
        OBSERVER,
    )
    br = verdict.blast_radius
    assert br["target"] == "host:ws-0142.corp.example"
    assert br["criticality"] == "high"
    assert br["dependents"] == 14
    assert br["known"] is True
    assert br["protected"] is False
    assert br["budget"]["used"] == 2


def test_unknown_criticality_is_medium(make_input: Factory) -> None:
    verdict = decide(make_input(97.0, criticality="tier-0-ish"), OBSERVER)
    assert verdict.blast_radius["criticality"] == "medium"


# -- kill switch -------------------------------------------------------------------------


@pytest.mark.parametrize("level", [AutonomyLevel.CONSULTANT, AutonomyLevel.APPROVER, 5])
def test_kill_switch_turns_execution_into_proposal(make_input: Factory, level: int) -> None:
    config = PolicyConfig.model_validate(
        {"agent_autonomy": level, "kill_switch": True, "review_sample_rate": 1.0}
    )
    verdict = decide(make_input(99.0), config)
    assert (verdict.disposition, verdict.rule) == (D.PROPOSED, "guardrail.kill_switch")
    assert verdict.review_sample is False


def test_kill_switch_leaves_other_dispositions_alone(make_input: Factory) -> None:
    config = _observer(kill_switch=True)
    assert decide(make_input(72.0), config).rule == "threshold.propose"
    assert decide(make_input(41.0, notify_at=30), config).rule == "threshold.notify"
    assert decide(make_input(12.0), config).disposition is D.SKIPPED


# -- combinations ------------------------------------------------------------------------


def test_all_guardrails_reported_first_one_names_the_rule(make_input: Factory) -> None:
    config = _observer(kill_switch=True)
    inp = make_input(
        99.0,
        action="disable_user",
        target_protected=True,
        reversible=False,
        rollback=None,
        executions_in_window=50,
    )
    verdict = decide(inp, config)
    assert (verdict.disposition, verdict.rule) == (D.PROPOSED, "guardrail.protected_asset")
    assert verdict.guardrails == (
        "guardrail.protected_asset",
        "guardrail.irreversible",
        "guardrail.four_eyes",
        "guardrail.blast_radius",
        "guardrail.kill_switch",
    )
    for rule in verdict.guardrails:
        assert rule in verdict.reason
    assert verdict.required_approvals == 2


@pytest.mark.parametrize(
    ("overrides", "config_kwargs", "first"),
    [
        ({"reversible": False, "executions_in_window": 99}, {}, "guardrail.irreversible"),
        ({"action": "disable_user", "executions_in_window": 99}, {}, "guardrail.four_eyes"),
        ({"executions_in_window": 99}, {"kill_switch": True}, "guardrail.blast_radius"),
        ({"risk": RiskTier.HIGH}, {"kill_switch": True}, "guardrail.four_eyes"),
    ],
)
def test_guardrail_precedence(
    make_input: Factory, overrides: dict[str, object], config_kwargs: dict[str, object], first: str
) -> None:
    verdict = decide(make_input(99.0, **overrides), _observer(**config_kwargs))
    assert (verdict.disposition, verdict.rule) == (D.PROPOSED, first)
    assert len(verdict.guardrails) == 2


def test_guardrails_listed_when_autonomy_already_downgraded(make_input: Factory) -> None:
    config = PolicyConfig(agent_autonomy=AutonomyLevel.COLLABORATOR, kill_switch=True)
    verdict = decide(make_input(99.0, target_protected=True), config)
    assert (verdict.disposition, verdict.rule) == (D.PROPOSED, "autonomy.collaborator")
    assert verdict.guardrails == ("guardrail.protected_asset", "guardrail.kill_switch")


def test_protected_pattern_object_is_accepted(make_input: Factory) -> None:
    config = PolicyConfig(
        agent_autonomy=AutonomyLevel.OBSERVER,
        protected=ProtectedAssets(hosts=["WS-0142*"]),
    )
    assert decide(make_input(99.0), config).rule == "guardrail.protected_asset"
