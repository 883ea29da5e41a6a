"""A language model's assessment moves a decision only as far as policy.model allows."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from soc_agent.models import AutonomyLevel, Disposition
from soc_agent.policy import PolicyConfig, PolicyInput, decide
from soc_agent.policy.rules import PolicyRule
from tests.unit.policy.test_policy_properties import configs, inputs

CONSULTANT = PolicyConfig(agent_autonomy=AutonomyLevel.CONSULTANT, review_sample_rate=0)


def test_an_execution_only_the_model_reaches_is_proposed(
    make_input: Callable[..., PolicyInput],
) -> None:
    inp = dataclasses.replace(make_input(95.0), model_points=10.0)  # 85 without the model
    verdict = decide(inp, CONSULTANT)
    assert (verdict.disposition, verdict.rule) == (
        Disposition.PROPOSED,
        PolicyRule.MODEL_NO_EXECUTE,
    )
    assert "only with 10 model-derived points (85 without them)" in verdict.reason


def test_the_model_may_execute_when_policy_allows_or_when_it_was_not_needed(
    make_input: Callable[..., PolicyInput],
) -> None:
    allowed = CONSULTANT.model_copy(
        update={"model": CONSULTANT.model.model_copy(update={"may_execute": True})}
    )
    inp = dataclasses.replace(make_input(95.0), model_points=10.0)
    assert decide(inp, allowed).disposition is Disposition.EXECUTED
    unneeded = dataclasses.replace(make_input(95.0), model_points=3.0)  # 92 without it
    assert decide(unneeded, CONSULTANT).disposition is Disposition.EXECUTED


def test_the_model_cannot_lift_a_score_out_of_the_approvers_edge_band(
    make_input: Callable[..., PolicyInput],
) -> None:
    approver = PolicyConfig(agent_autonomy=AutonomyLevel.APPROVER, edge_margin=5)
    inp = dataclasses.replace(make_input(97.0), model_points=5.0)  # 92: inside the edge band
    verdict = decide(inp, approver)
    assert (verdict.disposition, verdict.rule) == (
        Disposition.ESCALATED,
        PolicyRule.APPROVER_EDGE_CASE,
    )


@settings(max_examples=500)
@given(inp=inputs(), config=configs(), points=st.floats(0, 100))
def test_no_model_points_produce_an_execution_the_policy_would_not_make_without_them(
    inp: PolicyInput, config: PolicyConfig, points: float
) -> None:
    config = config.model_copy(
        update={"model": config.model.model_copy(update={"may_execute": False})}
    )
    with_model = dataclasses.replace(inp, model_points=points)
    without = dataclasses.replace(inp, score=inp.score - points, model_points=0.0)
    if decide(with_model, config).disposition is Disposition.EXECUTED:
        assert decide(without, config).disposition is Disposition.EXECUTED


def test_suspected_injection_turns_an_execution_into_a_proposal(
    make_input: Callable[..., PolicyInput],
) -> None:
    inp = dataclasses.replace(make_input(99.0), injection=("alert.title: role marker 'system:'",))
    verdict = decide(inp, CONSULTANT)
    assert (verdict.disposition, verdict.rule) == (Disposition.PROPOSED, PolicyRule.INJECTION)
    assert "alert.title: role marker 'system:'" in verdict.reason
    assert PolicyRule.INJECTION.value in verdict.guardrails


def test_suspected_injection_leaves_lower_dispositions_as_they_are(
    make_input: Callable[..., PolicyInput],
) -> None:
    inp = dataclasses.replace(make_input(10.0, notify_at=5.0), injection=("alert.title: x",))
    assert decide(inp, CONSULTANT).disposition is Disposition.NOTIFIED


def test_every_disposition_says_when_the_model_contributed(
    make_input: Callable[..., PolicyInput],
) -> None:
    helped = decide(dataclasses.replace(make_input(99.0), model_points=4.0), CONSULTANT)
    assert helped.disposition is Disposition.EXECUTED
    assert "model-derived points: 4" in helped.reason
    lowered = decide(dataclasses.replace(make_input(60.0), model_points=-10.0), CONSULTANT)
    assert "model-derived points: -10" in lowered.reason
    plain = decide(make_input(99.0), CONSULTANT)
    assert "model-derived" not in plain.reason


@settings(max_examples=300)
@given(inp=inputs(), config=configs())
def test_no_input_with_a_suspected_injection_executes(
    inp: PolicyInput, config: PolicyConfig
) -> None:
    flagged = dataclasses.replace(inp, injection=("alert.description: ignore previous",))
    verdict = decide(flagged, config)
    assert verdict.disposition is not Disposition.EXECUTED or (
        verdict.rule is PolicyRule.ALREADY_IN_EFFECT
    )
