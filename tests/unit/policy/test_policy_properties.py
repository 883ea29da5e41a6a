"""Properties that hold for any input: the guardrails are never bypassed; decide is pure."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from soc_agent.models import (
    ActionCandidate,
    AutonomyLevel,
    Disposition,
    Entity,
    EntityType,
    RiskTier,
    RunMode,
)
from soc_agent.policy import ActionFacts, PolicyConfig, PolicyInput, decide

ACTIONS = ["isolate_host", "disable_user", "block_ip", "revoke_sessions", "quarantine_file"]
TARGETS = [
    Entity(type=EntityType.HOST, value="dc-01.corp.example"),
    Entity(type=EntityType.HOST, value="ws-0142.corp.example"),
    Entity(type=EntityType.USER, value="svc-backup"),
    Entity(type=EntityType.USER, value="j.doe@corp.example"),
    Entity(type=EntityType.IP, value="10.0.0.17"),
    Entity(type=EntityType.IP, value="203.0.113.9"),
    Entity(type=EntityType.DOMAIN, value="login.corp.example"),
]
PROTECTED = {
    "hosts": ["dc-*"],
    "users": ["svc-*"],
    "ips": ["10.0.0.0/8"],
    "domains": ["corp.example"],
}

scores = st.floats(min_value=-10, max_value=150, allow_nan=False)
maybe_threshold = st.none() | st.floats(min_value=0, max_value=100, allow_nan=False)
levels = st.sampled_from(list(AutonomyLevel))
maybe_level = st.none() | levels
risks = st.sampled_from(list(RiskTier))


@st.composite
def configs(draw: st.DrawFn, kill_switch: bool | None = None) -> PolicyConfig:
    data: dict[str, Any] = {
        "agent_autonomy": draw(levels),
        "action_autonomy": draw(st.dictionaries(st.sampled_from(ACTIONS), levels, max_size=2)),
        "kill_switch": draw(st.booleans()) if kill_switch is None else kill_switch,
        "mode": draw(st.sampled_from(list(RunMode))),
        "protected": draw(st.sampled_from([{}, PROTECTED])),
        "four_eyes_actions": draw(st.lists(st.sampled_from(ACTIONS), max_size=2)),
        "four_eyes_min_risk": draw(st.none() | risks),
        "blast_radius": {
            "*": {
                "max_executions": draw(st.integers(0, 20)),
                "window_seconds": draw(st.integers(1, 86400)),
            }
        },
        "deny_actions": draw(st.lists(st.sampled_from(ACTIONS), max_size=1)),
        "edge_margin": draw(st.floats(0, 20)),
        "review_sample_rate": draw(st.floats(0, 1)),
    }
    return PolicyConfig.model_validate(data)


@st.composite
def inputs(draw: st.DrawFn, target_protected: bool | None = None) -> PolicyInput:
    action = draw(st.sampled_from(ACTIONS))
    candidate = ActionCandidate(
        playbook_rule="contain",
        action=action,
        target=draw(st.sampled_from(TARGETS)),
        execute_at=draw(maybe_threshold),
        propose_at=draw(maybe_threshold),
        notify_at=draw(maybe_threshold),
        autonomy=draw(maybe_level),
    )
    reversible = draw(st.booleans())
    facts = ActionFacts(
        connector="edr",
        capability=action,
        reversible=reversible,
        risk=draw(risks),
        rollback=draw(st.none() | st.just(f"undo_{action}")),
        granted=draw(st.booleans()),
        missing_scopes=tuple(draw(st.lists(st.sampled_from(["edr:contain", "idp:write"])))),
        target_protected=draw(st.booleans()) if target_protected is None else target_protected,
        target_criticality=draw(st.sampled_from(["low", "medium", "high", "critical", "?"])),
        target_known=draw(st.booleans()),
        dependents=draw(st.integers(0, 500)),
    )
    return PolicyInput(
        candidate=candidate,
        facts=facts,
        score=draw(scores),
        investigation_concluded=draw(st.booleans()),
        missing_evidence=tuple(draw(st.lists(st.sampled_from(["edr_tree", "ti_lookup"])))),
        playbook="pb",
        playbook_autonomy=draw(maybe_level),
        executions_in_window=draw(st.integers(0, 30)),
        idempotency_key=draw(st.text(min_size=1, max_size=40)),
    )


@settings(max_examples=400)
@given(inp=inputs(), config=configs(kill_switch=True))
def test_kill_switch_never_executes(inp: PolicyInput, config: PolicyConfig) -> None:
    verdict = decide(inp, config)
    assert verdict.disposition is not Disposition.EXECUTED
    assert verdict.intended is not Disposition.EXECUTED


@settings(max_examples=400)
@given(inp=inputs(target_protected=True), config=configs())
def test_protected_by_inventory_never_executes(inp: PolicyInput, config: PolicyConfig) -> None:
    verdict = decide(inp, config)
    assert verdict.disposition is not Disposition.EXECUTED
    assert verdict.intended is not Disposition.EXECUTED


@settings(max_examples=400)
@given(inp=inputs(), config=configs())
def test_protected_by_pattern_never_executes(inp: PolicyInput, config: PolicyConfig) -> None:
    verdict = decide(inp, config)
    if config.protected.matches(inp.candidate.target) is not None:
        assert Disposition.EXECUTED not in (verdict.disposition, verdict.intended)


@settings(max_examples=400)
@given(inp=inputs(), config=configs())
def test_invariants(inp: PolicyInput, config: PolicyConfig) -> None:
    verdict = decide(inp, config)
    assert decide(inp, config) == verdict  # deterministic
    assert verdict.rule
    assert verdict.reason
    executed = Disposition.EXECUTED in (verdict.disposition, verdict.intended)
    if executed:
        assert inp.facts.granted
        assert inp.facts.reversible
        assert inp.facts.rollback is not None
        assert inp.investigation_concluded
        assert not inp.missing_evidence
        assert not config.kill_switch
        assert verdict.autonomy >= AutonomyLevel.CONSULTANT
        assert verdict.guardrails == ()
    if config.mode is RunMode.LIVE:
        assert verdict.intended is None
    else:
        assert verdict.disposition is Disposition.SKIPPED
        assert verdict.intended is not None
        assert verdict.review_sample is False
    if verdict.review_sample:
        assert verdict.disposition is Disposition.EXECUTED
        assert verdict.autonomy is AutonomyLevel.CONSULTANT
    if not inp.facts.granted or inp.candidate.action in config.deny_actions:
        assert Disposition.DENIED in (verdict.disposition, verdict.intended)
    assert verdict.required_approvals in (1, 2)
