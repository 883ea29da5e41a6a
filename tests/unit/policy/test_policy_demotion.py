"""What the runtime flags make of an execution still due (`demote_for_flags`), purely."""

from __future__ import annotations

import pytest

from soc_agent.models import ActionRequest, AutonomyLevel, Disposition
from soc_agent.policy import PolicyConfig, demote_for_flags
from tests.unit.policy.conftest import executed_request


def _executed(autonomy: AutonomyLevel = AutonomyLevel.OBSERVER, **update: object) -> ActionRequest:
    return executed_request(autonomy=autonomy, review_sample=True, **update)


def test_the_kill_switch_makes_an_execution_a_proposal() -> None:
    demoted = demote_for_flags(_executed(), PolicyConfig(kill_switch=True))
    assert demoted is not None
    assert (demoted.disposition, demoted.rule) == (Disposition.PROPOSED, "guardrail.kill_switch")
    assert demoted.guardrails == ["guardrail.kill_switch"]
    assert demoted.reason.startswith("score 97 >= execute_at 90; but the kill switch")
    assert demoted.review_sample is False  # a proposal is reviewed as such, not sampled


@pytest.mark.parametrize(
    ("agent", "cap", "expected"),
    [
        (AutonomyLevel.COLLABORATOR, None, (Disposition.PROPOSED, "autonomy.collaborator")),
        (AutonomyLevel.OPERATOR, None, (Disposition.NOTIFIED, "autonomy.operator")),
        # the deployment-wide cap on the action alone
        (
            AutonomyLevel.OBSERVER,
            AutonomyLevel.COLLABORATOR,
            (Disposition.PROPOSED, "autonomy.collaborator"),
        ),
        (
            AutonomyLevel.OBSERVER,
            AutonomyLevel.OPERATOR,
            (Disposition.NOTIFIED, "autonomy.operator"),
        ),
        # levels that execute leave the decision standing
        (AutonomyLevel.CONSULTANT, None, None),
        (AutonomyLevel.APPROVER, AutonomyLevel.CONSULTANT, None),
        (AutonomyLevel.OBSERVER, None, None),
    ],
)
def test_a_lowered_level_that_never_executes_demotes(
    agent: AutonomyLevel, cap: AutonomyLevel | None, expected: tuple[Disposition, str] | None
) -> None:
    config = PolicyConfig(
        agent_autonomy=agent, action_autonomy={"isolate_host": cap} if cap else {}
    )
    demoted = demote_for_flags(_executed(), config)
    got = None if demoted is None else (demoted.disposition, demoted.rule)
    assert got == expected
    if demoted is not None:
        assert demoted.guardrails == []
        assert "the autonomy was lowered to level" in demoted.reason


def test_a_request_decided_at_a_level_already_that_low_is_left_alone() -> None:
    """Not lowered since the decision (an execution never carries such a level, but a
    demotion is for what changed, not a second policy)."""
    config = PolicyConfig(agent_autonomy=AutonomyLevel.COLLABORATOR)
    assert demote_for_flags(_executed(AutonomyLevel.COLLABORATOR), config) is None


@pytest.mark.parametrize("disposition", [d for d in Disposition if d is not Disposition.EXECUTED])
def test_only_an_execution_is_demoted(disposition: Disposition) -> None:
    request = _executed(disposition=disposition)
    assert demote_for_flags(request, PolicyConfig(kill_switch=True)) is None
