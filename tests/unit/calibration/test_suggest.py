"""Autonomy advice: the highest level whose executions are precise enough, or propose."""

from __future__ import annotations

import yaml

from soc_agent.calibration.model import ActionOutcome
from soc_agent.calibration.suggest import as_block, suggest
from soc_agent.models import AutonomyLevel, Verdict
from soc_agent.policy import CalibrationPolicy

RULE = CalibrationPolicy(min_cases=50, min_precision=0.98)


def outcomes(
    action: str, n: int, correct: int, levels: dict[int, str], *, start: int = 0
) -> list[ActionOutcome]:
    return [
        ActionOutcome(
            alert_id=f"a-{start + i}",
            incident_id=f"inc-{start + i}",
            playbook="p",
            action=action,
            target=f"host:h{start + i}",
            score=90,
            disposition="executed",
            rule="threshold.execute",
            verdict=Verdict.TRUE_POSITIVE if i < correct else Verdict.FALSE_POSITIVE,
            at_level=levels,
        )
        for i in range(n)
    ]


EXECUTES_EVERYWHERE = {3: "executed", 4: "executed", 5: "executed"}


def test_precise_enough_over_enough_cases_is_fully_autonomous() -> None:
    (advice,) = suggest(outcomes("block_ip", 60, 59, EXECUTES_EVERYWHERE), RULE)
    assert advice.level is AutonomyLevel.OBSERVER
    assert "59/60" in advice.why


def test_the_highest_level_that_clears_wins_when_a_higher_one_adds_mistakes() -> None:
    # Level 5 also executes the 10 edge cases level 4 escalates, and those were wrong.
    sure = outcomes("isolate_host", 55, 55, EXECUTES_EVERYWHERE)
    edge = outcomes(
        "isolate_host", 10, 0, {3: "escalated", 4: "escalated", 5: "executed"}, start=100
    )
    (advice,) = suggest(sure + edge, RULE)
    assert advice.level is AutonomyLevel.APPROVER
    measured = dict(advice.measured)
    assert measured[AutonomyLevel.OBSERVER].labelled == 65
    assert measured[AutonomyLevel.APPROVER].labelled == 55


def test_too_few_cases_or_too_many_mistakes_means_propose() -> None:
    few = suggest(outcomes("disable_user", 20, 20, EXECUTES_EVERYWHERE), RULE)
    sloppy = suggest(outcomes("block_domain", 100, 90, EXECUTES_EVERYWHERE), RULE)
    assert [a.level for a in few + sloppy] == [AutonomyLevel.COLLABORATOR] * 2
    assert "propose, do not execute" in few[0].why


def test_the_block_is_yaml_ready_to_paste_under_policy() -> None:
    advice = suggest(
        outcomes("block_ip", 60, 60, EXECUTES_EVERYWHERE)
        + outcomes("disable_user", 3, 3, EXECUTES_EVERYWHERE, start=500),
        RULE,
    )
    parsed = yaml.safe_load(as_block(advice))
    assert parsed == {"action_autonomy": {"block_ip": 5, "disable_user": 2}}


def test_an_action_that_only_ever_notifies_gets_no_advice() -> None:
    told = [
        o.__class__(**{**o.__dict__, "disposition": "notified"})
        for o in outcomes("notify", 5, 5, {3: "notified", 4: "notified", 5: "notified"})
    ]
    assert suggest(told, RULE) == []
