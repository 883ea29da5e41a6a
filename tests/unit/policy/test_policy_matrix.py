"""Every autonomy level against every score band: disposition and the rule that produced it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from soc_agent.models import AutonomyLevel, Disposition
from soc_agent.policy import PolicyConfig, PolicyInput, decide

L = AutonomyLevel
D = Disposition

# Thresholds used throughout: execute_at 90 (config default), propose_at 60 (config
# default), notify_at 30 (set on the candidate), edge_margin 5 (config default).
BANDS = {
    "below_notify": 12.0,
    "notify": 41.0,
    "propose": 72.0,
    "edge": 92.0,
    "execute": 97.0,
}

# (level, band) -> (disposition, rule)
EXPECTED: dict[tuple[AutonomyLevel, str], tuple[Disposition, str]] = {
    # level 1 operator: recommends only, never a proposal that could execute
    (L.OPERATOR, "below_notify"): (D.SKIPPED, "threshold.below_notify"),
    (L.OPERATOR, "notify"): (D.NOTIFIED, "threshold.notify"),
    (L.OPERATOR, "propose"): (D.NOTIFIED, "autonomy.operator"),
    (L.OPERATOR, "edge"): (D.NOTIFIED, "autonomy.operator"),
    (L.OPERATOR, "execute"): (D.NOTIFIED, "autonomy.operator"),
    # level 2 collaborator: every action becomes a proposal
    (L.COLLABORATOR, "below_notify"): (D.SKIPPED, "threshold.below_notify"),
    (L.COLLABORATOR, "notify"): (D.NOTIFIED, "threshold.notify"),
    (L.COLLABORATOR, "propose"): (D.PROPOSED, "threshold.propose"),
    (L.COLLABORATOR, "edge"): (D.PROPOSED, "autonomy.collaborator"),
    (L.COLLABORATOR, "execute"): (D.PROPOSED, "autonomy.collaborator"),
    # level 3 consultant: executes above threshold (sampling off in this table)
    (L.CONSULTANT, "below_notify"): (D.SKIPPED, "threshold.below_notify"),
    (L.CONSULTANT, "notify"): (D.NOTIFIED, "threshold.notify"),
    (L.CONSULTANT, "propose"): (D.PROPOSED, "threshold.propose"),
    (L.CONSULTANT, "edge"): (D.EXECUTED, "threshold.execute"),
    (L.CONSULTANT, "execute"): (D.EXECUTED, "threshold.execute"),
    # level 4 approver: executes, escalates edge cases
    (L.APPROVER, "below_notify"): (D.SKIPPED, "threshold.below_notify"),
    (L.APPROVER, "notify"): (D.NOTIFIED, "threshold.notify"),
    (L.APPROVER, "propose"): (D.PROPOSED, "threshold.propose"),
    (L.APPROVER, "edge"): (D.ESCALATED, "autonomy.approver.edge_case"),
    (L.APPROVER, "execute"): (D.EXECUTED, "threshold.execute"),
    # level 5 observer: fully autonomous within guardrails
    (L.OBSERVER, "below_notify"): (D.SKIPPED, "threshold.below_notify"),
    (L.OBSERVER, "notify"): (D.NOTIFIED, "threshold.notify"),
    (L.OBSERVER, "propose"): (D.PROPOSED, "threshold.propose"),
    (L.OBSERVER, "edge"): (D.EXECUTED, "threshold.execute"),
    (L.OBSERVER, "execute"): (D.EXECUTED, "threshold.execute"),
}


def test_matrix_is_complete() -> None:
    assert set(EXPECTED) == {(level, band) for level in AutonomyLevel for band in BANDS}


@pytest.mark.parametrize(("level", "band"), [(lv, band) for lv in AutonomyLevel for band in BANDS])
def test_autonomy_by_score_band(
    make_input: Callable[..., PolicyInput], level: AutonomyLevel, band: str
) -> None:
    config = PolicyConfig(agent_autonomy=level, review_sample_rate=0.0)
    verdict = decide(make_input(BANDS[band], notify_at=30), config)
    disposition, rule = EXPECTED[(level, band)]
    assert (verdict.disposition, verdict.rule) == (disposition, rule)
    assert verdict.autonomy is level
    assert verdict.intended is None
    assert verdict.review_sample is False
    assert verdict.required_approvals == 1
    assert verdict.reason


@pytest.mark.parametrize(
    ("score", "disposition", "rule"),
    [
        (29.99, D.SKIPPED, "threshold.below_notify"),
        (30.0, D.NOTIFIED, "threshold.notify"),
        (59.99, D.NOTIFIED, "threshold.notify"),
        (60.0, D.PROPOSED, "threshold.propose"),
        (89.99, D.PROPOSED, "threshold.propose"),
        (90.0, D.ESCALATED, "autonomy.approver.edge_case"),
        (94.99, D.ESCALATED, "autonomy.approver.edge_case"),
        (95.0, D.EXECUTED, "threshold.execute"),
        (100.0, D.EXECUTED, "threshold.execute"),
    ],
)
def test_band_boundaries_are_inclusive_at_the_threshold(
    make_input: Callable[..., PolicyInput], score: float, disposition: Disposition, rule: str
) -> None:
    verdict = decide(make_input(score, notify_at=30), PolicyConfig())
    assert (verdict.disposition, verdict.rule) == (disposition, rule)


def test_without_notify_at_everything_below_propose_is_skipped(
    make_input: Callable[..., PolicyInput],
) -> None:
    verdict = decide(make_input(41.0), PolicyConfig())
    assert (verdict.disposition, verdict.rule) == (D.SKIPPED, "threshold.below_propose")
    assert verdict.notify_at is None
    assert "below propose_at 60" in verdict.reason


def test_candidate_thresholds_override_config_defaults(
    make_input: Callable[..., PolicyInput],
) -> None:
    config = PolicyConfig(agent_autonomy=L.OBSERVER)
    inp = make_input(81.0, execute_at=80, propose_at=50)
    verdict = decide(inp, config)
    assert (verdict.disposition, verdict.rule) == (D.EXECUTED, "threshold.execute")
    assert (verdict.execute_at, verdict.propose_at) == (80, 50)
    assert decide(make_input(55.0, execute_at=80, propose_at=50), config).disposition is D.PROPOSED


def test_config_defaults_apply_when_candidate_has_no_thresholds(
    make_input: Callable[..., PolicyInput],
) -> None:
    config = PolicyConfig(agent_autonomy=L.OBSERVER, default_execute_at=70, default_propose_at=40)
    assert decide(make_input(71.0), config).disposition is D.EXECUTED
    assert decide(make_input(45.0), config).disposition is D.PROPOSED
    assert decide(make_input(39.0), config).disposition is D.SKIPPED


def test_reason_names_the_values(make_input: Callable[..., PolicyInput]) -> None:
    verdict = decide(make_input(72.0), PolicyConfig())
    assert "score 72 is below execute_at 90 and at or above propose_at 60" in verdict.reason
    edge = decide(make_input(92.5), PolicyConfig())
    assert "92.5" in edge.reason
    assert "edge_margin 5" in edge.reason


def test_edge_margin_is_configurable(make_input: Callable[..., PolicyInput]) -> None:
    assert decide(make_input(92.0), PolicyConfig(edge_margin=0)).disposition is D.EXECUTED
    wide = decide(make_input(99.0), PolicyConfig(edge_margin=10))
    assert (wide.disposition, wide.rule) == (D.ESCALATED, "autonomy.approver.edge_case")


def test_nan_score_never_acts(make_input: Callable[..., PolicyInput]) -> None:
    verdict = decide(make_input(float("nan")), PolicyConfig(agent_autonomy=L.OBSERVER))
    assert verdict.disposition is D.SKIPPED
