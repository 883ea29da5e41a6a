"""Dry-run and shadow: decide and record what would have happened; execute and queue nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from soc_agent.models import AutonomyLevel, Disposition, RunMode
from soc_agent.policy import PolicyConfig, PolicyInput, decide

D = Disposition
Factory = Callable[..., PolicyInput]

CASES = [
    # (input overrides, config overrides, intended, intended rule)
    ({"score": 99.0}, {}, D.EXECUTED, "threshold.execute"),
    ({"score": 72.0}, {}, D.PROPOSED, "threshold.propose"),
    ({"score": 99.0, "target_protected": True}, {}, D.PROPOSED, "guardrail.protected_asset"),
    ({"score": 41.0, "notify_at": 30}, {}, D.NOTIFIED, "threshold.notify"),
    ({"score": 12.0}, {}, D.SKIPPED, "threshold.below_propose"),
    ({"score": 99.0, "concluded": False}, {}, D.ESCALATED, "investigation.incomplete"),
    ({"score": 99.0}, {"deny_actions": ["isolate_host"]}, D.DENIED, "guardrail.deny_list"),
    ({"score": 99.0}, {"kill_switch": True}, D.PROPOSED, "guardrail.kill_switch"),
]


@pytest.mark.parametrize(
    ("mode", "mode_rule"),
    [(RunMode.DRY_RUN, "guardrail.dry_run"), (RunMode.SHADOW, "guardrail.shadow")],
)
@pytest.mark.parametrize(("overrides", "config_kwargs", "intended", "intended_rule"), CASES)
def test_non_live_modes_skip_and_record_intended(
    make_input: Factory,
    mode: RunMode,
    mode_rule: str,
    overrides: dict[str, object],
    config_kwargs: dict[str, object],
    intended: Disposition,
    intended_rule: str,
) -> None:
    base = {"agent_autonomy": AutonomyLevel.OBSERVER, **config_kwargs}
    live = decide(make_input(**overrides), PolicyConfig.model_validate(base))
    assert (live.disposition, live.rule, live.intended) == (intended, intended_rule, None)

    verdict = decide(make_input(**overrides), PolicyConfig.model_validate({**base, "mode": mode}))
    assert verdict.disposition is D.SKIPPED
    assert verdict.rule == mode_rule
    assert verdict.intended is intended
    assert verdict.intended_rule == intended_rule
    assert intended_rule in verdict.reason
    assert verdict.required_approvals == live.required_approvals
    assert verdict.guardrails == live.guardrails


def test_non_live_never_queues_a_review_sample(make_input: Factory) -> None:
    config = PolicyConfig(
        agent_autonomy=AutonomyLevel.CONSULTANT, review_sample_rate=1.0, mode=RunMode.SHADOW
    )
    verdict = decide(make_input(99.0), config)
    assert verdict.intended is D.EXECUTED
    assert verdict.intended_rule == "autonomy.consultant.sample"
    assert verdict.review_sample is False


def test_mode_accepts_hyphenated_spelling() -> None:
    assert PolicyConfig.model_validate({"mode": "dry-run"}).mode is RunMode.DRY_RUN
