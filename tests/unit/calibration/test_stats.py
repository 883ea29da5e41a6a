"""Calibration statistics: Wilson intervals against known values, which cases count as
labelled and correct, the figures per action, the threshold sweep and the diff."""

from __future__ import annotations

import functools
import subprocess
import sys

import pytest

from soc_agent.calibration.model import ActionOutcome, DispositionCounts, Verdict
from soc_agent.calibration.stats import (
    MISSING_EXTRA,
    build_report,
    changes,
    figures,
    precision,
)

TP, BTP, FP = Verdict.TRUE_POSITIVE, Verdict.BENIGN_TRUE_POSITIVE, Verdict.FALSE_POSITIVE


def outcome(
    alert_id: str = "cs-ldt-8f3a91",
    *,
    playbook: str = "identity-compromise",
    action: str = "disable_user",
    target: str = "user:m.chen@acme.example",
    disposition: str = "executed",
    verdict: Verdict | None = TP,
    score: float = 92.0,
    at_threshold: dict[int, str] | None = None,
    endorsed: bool | None = None,
) -> ActionOutcome:
    return ActionOutcome(
        alert_id=alert_id,
        incident_id=f"inc-{alert_id}",
        playbook=playbook,
        action=action,
        target=target,
        score=score,
        disposition=disposition,
        rule="threshold.execute" if disposition == "executed" else "threshold.propose",
        verdict=verdict,
        at_threshold=at_threshold or {},
        endorsed=endorsed,
    )


def labelled(correct: int, wrong: int) -> list[ActionOutcome]:
    """`correct` executed true positives then `wrong` false positives, each its own alert."""
    verdicts = [TP] * correct + [FP] * wrong
    return [outcome(f"alert-{i:04d}", verdict=v) for i, v in enumerate(verdicts)]


# Known Wilson score intervals (checked against the closed form, z from the normal quantile).
@pytest.mark.parametrize(
    ("correct", "total", "confidence", "low", "high"),
    [
        (38, 40, 0.95, 0.8350, 0.9862),
        (5, 10, 0.95, 0.2366, 0.7634),
        (0, 10, 0.95, 0.0, 0.2775),
        (38, 40, 0.90, 0.8597, 0.9833),
        (49, 50, 0.99, 0.8499, 0.9976),
        (1, 1, 0.95, 0.2065, 1.0),
    ],
)
def test_wilson_interval_matches_known_values(
    correct: int, total: int, confidence: float, low: float, high: float
) -> None:
    p = precision(labelled(correct, total - correct), confidence=confidence)
    assert (p.correct, p.labelled) == (correct, total)
    assert p.value == pytest.approx(correct / total)
    assert p.low == pytest.approx(low, abs=5e-5)
    assert p.high == pytest.approx(high, abs=5e-5)
    assert type(p.low) is float and type(p.high) is float  # not numpy scalars


@pytest.mark.parametrize(
    ("verdicts", "correct", "count"),
    [
        ([TP, TP, FP], 2, 3),
        ([TP, BTP], 1, 2),  # expected activity does not warrant containment
        ([TP, None, None, FP], 1, 2),  # no verdict: not labelled, counts neither way
        ([BTP, FP], 0, 2),
    ],
)
def test_only_true_positives_are_correct_and_only_verdicts_are_labelled(
    verdicts: list[Verdict | None], correct: int, count: int
) -> None:
    p = precision([outcome(f"a{i}", verdict=v) for i, v in enumerate(verdicts)])
    assert (p.correct, p.labelled) == (correct, count)
    assert p.value == pytest.approx(correct / count)
    assert p.value is not None and p.low is not None and p.high is not None
    assert p.low <= p.value <= p.high


@pytest.mark.parametrize("outcomes", [[], [outcome(verdict=None), outcome("b", verdict=None)]])
def test_nothing_labelled_gives_no_figures(outcomes: list[ActionOutcome]) -> None:
    p = precision(outcomes)
    assert (p.correct, p.labelled, p.value, p.low, p.high) == (0, 0, None, None, None)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 95.0, -0.5])
def test_confidence_outside_0_1_is_refused(confidence: float) -> None:
    with pytest.raises(ValueError, match="confidence"):
        precision(labelled(3, 1), confidence=confidence)


def test_figures_group_by_playbook_and_action_sorted_with_counts() -> None:
    isolate = functools.partial(
        outcome, playbook="edr-malware", action="isolate_host", target="host:ws-eng-007"
    )
    outcomes = [
        *labelled(3, 1),  # identity-compromise / disable_user by default
        *[outcome(f"p{i}", disposition="proposed", verdict=FP) for i in range(2)],
        outcome("n1", disposition="notified"),
        outcome("s1", disposition="suppressed"),
        outcome("f1", disposition="failed", verdict=None),
        isolate("e1", disposition="escalated"),
        isolate("e2", disposition="proposed", verdict=None),
    ]
    figs = figures(outcomes)
    assert [(f.playbook, f.action) for f in figs] == [
        ("edr-malware", "isolate_host"),
        ("identity-compromise", "disable_user"),
    ]
    edr, identity = figs
    assert identity.counts == DispositionCounts(executed=4, proposed=2, notified=1, other=2)
    assert (identity.executions.correct, identity.executions.labelled) == (3, 4)
    assert (identity.proposals.correct, identity.proposals.labelled) == (0, 2)
    assert edr.counts == DispositionCounts(proposed=1, escalated=1)
    assert edr.executions.labelled == 0 and edr.executions.value is None
    assert edr.proposals.labelled == 0  # the one proposal has no verdict


def test_sweep_counts_executions_and_their_precision_at_each_threshold() -> None:
    # Scores 60..95 step 5 with a true positive above 80: the pure policy re-run executes
    # an action whenever score >= execute_at.
    outcomes = [
        outcome(
            f"alert-{s}",
            score=s,
            verdict=TP if s > 80 else FP,
            disposition="executed" if s >= 85 else "proposed",
            at_threshold={t: "executed" if s >= t else "proposed" for t in range(50, 101, 5)},
        )
        for s in range(60, 100, 5)
    ]
    (fig,) = figures(outcomes)
    sweep = {p.threshold: p for p in fig.sweep}
    assert list(sweep) == list(range(50, 101, 5))
    expected = {  # threshold: (executions, correct)
        50: (8, 3),
        60: (8, 3),
        65: (7, 3),
        80: (4, 3),
        85: (3, 3),
        95: (1, 1),
        100: (0, 0),
    }
    for threshold, (executions, correct) in expected.items():
        point = sweep[threshold]
        assert point.executions == executions, threshold
        assert (point.precision.correct, point.precision.labelled) == (correct, executions)
    assert sweep[85].precision.value == 1.0
    assert sweep[100].precision.value is None  # nothing executes: no figure, not zero
    assert fig.executions.labelled == 3 and fig.executions.value == 1.0


def test_sweep_keeps_unlabelled_executions_out_of_precision_but_in_volume() -> None:
    outcomes = [
        outcome("a", verdict=TP, at_threshold={70: "executed"}),
        outcome("b", verdict=None, at_threshold={70: "executed"}),
        outcome("c", verdict=FP, at_threshold={70: "proposed"}),
    ]
    (point,) = figures(outcomes, thresholds=[70])[0].sweep
    assert point.executions == 2
    assert (point.precision.correct, point.precision.labelled) == (1, 1)


def test_sweep_leaves_out_thresholds_the_replay_did_not_rerun() -> None:
    outcomes = [outcome("a", at_threshold={60: "executed", 90: "proposed"}), outcome("b")]
    sweep = figures(outcomes, thresholds=range(50, 101, 10))[0].sweep
    assert [p.threshold for p in sweep] == [60, 90]
    assert figures([outcome("a")])[0].sweep == ()


def _diff(current: list[ActionOutcome], candidate: list[ActionOutcome]) -> list[tuple[str, ...]]:
    return [(c.alert_id, c.target, c.current, c.candidate) for c in changes(current, candidate)]


HOST = "host:ws-eng-007"


@pytest.mark.parametrize(
    ("current", "candidate", "expected"),
    [
        pytest.param([outcome("a")], [outcome("a")], [], id="unchanged"),
        pytest.param(
            [outcome("a", disposition="proposed")],
            [outcome("a", disposition="executed")],
            [("a", "user:m.chen@acme.example", "proposed", "executed")],
            id="proposed-to-executed",
        ),
        pytest.param(
            [outcome("a")],
            [],
            [("a", "user:m.chen@acme.example", "executed", "absent")],
            id="only-current",
        ),
        pytest.param(
            [],
            [outcome("a", target=HOST)],
            [("a", HOST, "absent", "executed")],
            id="only-candidate",
        ),
        pytest.param(
            [outcome("a"), outcome("a", target=HOST, disposition="proposed")],
            [outcome("a", target=HOST), outcome("a")],
            [("a", HOST, "proposed", "executed")],
            id="matched-by-target-not-order",
        ),
        pytest.param(
            [outcome("a"), outcome("a")],
            [outcome("a")],
            [("a", "user:m.chen@acme.example", "executed", "absent")],
            id="duplicate-paired-once",
        ),
        pytest.param(
            [outcome("b", disposition="notified"), outcome("a", disposition="notified")],
            [outcome("b"), outcome("a")],
            [
                ("a", "user:m.chen@acme.example", "notified", "executed"),
                ("b", "user:m.chen@acme.example", "notified", "executed"),
            ],
            id="sorted-by-alert",
        ),
    ],
)
def test_changes_match_by_alert_playbook_action_and_target(
    current: list[ActionOutcome], candidate: list[ActionOutcome], expected: list[tuple[str, ...]]
) -> None:
    assert _diff(current, candidate) == expected


def test_a_change_carries_the_verdict_and_names_the_action() -> None:
    (change,) = changes(
        [outcome("a", disposition="proposed", verdict=FP, playbook="edr-malware")],
        [outcome("a", disposition="executed", verdict=FP, playbook="edr-malware")],
    )
    assert change.verdict is FP
    assert (change.playbook, change.action) == ("edr-malware", "disable_user")
    (absent,) = changes([], [outcome("a", verdict=BTP)])
    assert absent.verdict is BTP  # taken from the side that has the action


def test_build_report_without_candidate() -> None:
    current = [*labelled(38, 2), outcome("unlabelled", verdict=None)]
    report = build_report(current, alerts=120)
    assert (report.alerts, report.labelled, report.confidence) == (120, 40, 0.95)
    assert report.candidate is None and report.changes == ()
    (fig,) = report.current
    assert fig.executions.low == pytest.approx(0.8350, abs=5e-5)


def test_build_report_with_candidate_measures_both_and_diffs() -> None:
    current = [outcome("a", disposition="proposed"), outcome("b", verdict=FP)]
    candidate = [outcome("a"), outcome("b", verdict=FP, disposition="proposed")]
    report = build_report(current, candidate, alerts=2, confidence=0.9)
    assert report.candidate is not None
    assert report.current[0].counts == DispositionCounts(executed=1, proposed=1)
    assert report.candidate[0].executions.value == 1.0
    assert [(c.alert_id, c.current, c.candidate) for c in report.changes] == [
        ("a", "proposed", "executed"),
        ("b", "executed", "proposed"),
    ]
    assert report.confidence == 0.9 and report.labelled == 2


def test_missing_scipy_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.stats", None)
    with pytest.raises(RuntimeError) as raised:
        precision(labelled(1, 1))
    assert str(raised.value) == MISSING_EXTRA
    assert "soc-agent[calibrate]" in MISSING_EXTRA
    assert precision([]).value is None  # nothing to compute: no need for scipy


def test_the_calibration_modules_import_without_the_extra() -> None:
    code = (
        "import sys; import soc_agent.calibration.stats, soc_agent.calibration.report; "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'scipy', 'matplotlib'}); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_an_analysts_judgement_of_the_action_outranks_the_incidents_verdict() -> None:
    # The incident was real, but blocking that address was rejected: a wrong execution.
    # An unclosed incident whose proposal an analyst approved: a right one.
    # A rollback of an action on a false positive: wrong either way.
    cases = [
        outcome("a-1", verdict=TP, endorsed=False),
        outcome("a-2", verdict=None, endorsed=True),
        outcome("a-3", verdict=FP, endorsed=False),
        outcome("a-4", verdict=TP),
        outcome("a-5", verdict=None),  # no label of any kind: not counted
    ]
    p = precision(cases)
    assert (p.correct, p.labelled) == (2, 4)
    (figs,) = figures(cases)
    assert figs.judged == 3  # three figures rest on a judgement of the action itself
    report = build_report(cases, alerts=5)
    assert report.labelled == 4
