"""A human must look when the investigation did not conclude: never decide on partial evidence."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from soc_agent.models import AutonomyLevel, Disposition
from soc_agent.policy import PolicyConfig, PolicyInput, decide

Factory = Callable[..., PolicyInput]
ALL_LEVELS = list(AutonomyLevel)


@pytest.mark.parametrize("level", ALL_LEVELS)
@pytest.mark.parametrize("score", [72.0, 92.0, 99.0])
def test_incomplete_investigation_escalates(
    make_input: Factory, level: AutonomyLevel, score: float
) -> None:
    verdict = decide(make_input(score, concluded=False), PolicyConfig(agent_autonomy=level))
    assert (verdict.disposition, verdict.rule) == (
        Disposition.ESCALATED,
        "investigation.incomplete",
    )
    assert verdict.autonomy is level


@pytest.mark.parametrize("level", ALL_LEVELS)
@pytest.mark.parametrize("score", [72.0, 92.0, 99.0])
def test_missing_evidence_escalates_naming_the_steps(
    make_input: Factory, level: AutonomyLevel, score: float
) -> None:
    inp = make_input(
        score,
        requires=("edr_process_tree", "ti_hash_lookup"),
        missing_evidence=("edr_process_tree", "ti_hash_lookup"),
    )
    verdict = decide(inp, PolicyConfig(agent_autonomy=level))
    assert (verdict.disposition, verdict.rule) == (
        Disposition.ESCALATED,
        "investigation.missing_evidence",
    )
    assert "edr_process_tree" in verdict.reason
    assert "ti_hash_lookup" in verdict.reason


def test_incomplete_is_reported_before_missing_evidence(make_input: Factory) -> None:
    inp = make_input(99.0, concluded=False, missing_evidence=("ti_hash_lookup",))
    assert decide(inp, PolicyConfig()).rule == "investigation.incomplete"


@pytest.mark.parametrize(("score", "disposition"), [(12.0, "skipped"), (41.0, "notified")])
def test_below_propose_an_incomplete_investigation_changes_nothing(
    make_input: Factory, score: float, disposition: str
) -> None:
    inp = make_input(score, notify_at=30, concluded=False, missing_evidence=("ti_hash_lookup",))
    verdict = decide(inp, PolicyConfig(agent_autonomy=AutonomyLevel.OBSERVER))
    assert verdict.disposition == disposition
    assert verdict.rule.startswith("threshold.")


def test_escalation_wins_over_guardrails(make_input: Factory) -> None:
    config = PolicyConfig(agent_autonomy=AutonomyLevel.OBSERVER, kill_switch=True)
    verdict = decide(make_input(99.0, concluded=False, target_protected=True), config)
    assert verdict.disposition is Disposition.ESCALATED
    assert verdict.rule == "investigation.incomplete"


@pytest.mark.parametrize(
    ("score", "bound", "expected", "rule"),
    [
        (45.0, 90.0, Disposition.ESCALATED, "investigation.unevaluated"),  # could execute
        (45.0, 70.0, Disposition.ESCALATED, "investigation.unevaluated"),  # could propose
        (45.0, 55.0, Disposition.NOTIFIED, "threshold.notify"),  # bound stays below propose
        (10.0, 95.0, Disposition.ESCALATED, "investigation.unevaluated"),  # even below notify
        (75.0, 95.0, Disposition.PROPOSED, "threshold.propose"),  # a human decides anyway
    ],
)
def test_rules_that_could_not_be_evaluated_escalate_what_they_might_have_reached(
    make_input: Factory, score: float, bound: float, expected: Disposition, rule: str
) -> None:
    inp = dataclasses.replace(
        make_input(score, execute_at=90, propose_at=60, notify_at=30),
        score_bound=bound,
        unevaluated=("ip-malicious (not evaluated, evidence missing: step 'ip_intel' ...)",),
    )
    verdict = decide(inp, PolicyConfig(agent_autonomy=AutonomyLevel.OBSERVER))
    assert (verdict.disposition, verdict.rule) == (expected, rule)
    if rule == "investigation.unevaluated":
        assert "ip-malicious" in verdict.reason and f"could reach {bound:g}" in verdict.reason


@pytest.mark.parametrize("level", ALL_LEVELS)
@pytest.mark.parametrize("score", [72.0, 92.0, 99.0])
def test_an_action_nothing_configured_provides_escalates_from_propose_at(
    make_input: Factory, level: AutonomyLevel, score: float
) -> None:
    inp = dataclasses.replace(make_input(score), facts=None)
    verdict = decide(inp, PolicyConfig(agent_autonomy=level))
    assert (verdict.disposition, verdict.rule) == (Disposition.ESCALATED, "config.no_connector")
    assert "no configured connector provides the action 'isolate_host'" in verdict.reason
    assert "a human must act" in verdict.reason


def test_below_propose_an_action_nothing_provides_is_only_notified(make_input: Factory) -> None:
    inp = dataclasses.replace(make_input(40.0, notify_at=30.0), facts=None)
    verdict = decide(inp, PolicyConfig())
    assert (verdict.disposition, verdict.rule) == (Disposition.NOTIFIED, "threshold.notify")


def test_in_shadow_mode_the_escalation_is_only_intended(make_input: Factory) -> None:
    from soc_agent.models import RunMode

    inp = dataclasses.replace(make_input(92.0), facts=None)
    verdict = decide(inp, PolicyConfig(mode=RunMode.SHADOW))
    assert verdict.disposition is Disposition.SKIPPED
    assert (verdict.intended, verdict.intended_rule) == (
        Disposition.ESCALATED,
        "config.no_connector",
    )
