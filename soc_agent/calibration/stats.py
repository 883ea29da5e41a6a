"""Pure statistics over replayed outcomes: precision with Wilson intervals, the
threshold sweep and the dispositions that change between two configurations.

scipy comes with the optional `calibrate` extra, so it is imported only where an
interval is computed: the base package imports and runs without it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from itertools import zip_longest

from soc_agent.calibration.model import (
    ActionFigures,
    ActionOutcome,
    CalibrationReport,
    Change,
    DispositionCounts,
    Precision,
    SweepPoint,
)

__all__ = [
    "ABSENT",
    "DEFAULT_THRESHOLDS",
    "MISSING_EXTRA",
    "build_report",
    "changes",
    "figures",
    "precision",
]

MISSING_EXTRA = "calibration needs the optional dependencies: pip install 'soc-agent[calibrate]'"
DEFAULT_THRESHOLDS = range(50, 101, 5)
# The disposition shown for an action that only one of the two runs put forward.
ABSENT = "absent"
_COUNTED = ("executed", "proposed", "notified", "escalated")

_Key = tuple[str, str, str, str]  # alert_id, playbook, action, target


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence!r}")


def _wilson(correct: int, labelled: int, confidence: float) -> tuple[float, float]:
    try:
        from scipy.stats import binomtest  # type: ignore[import-untyped]
    except ImportError as exc:
        raise RuntimeError(MISSING_EXTRA) from exc
    ci = binomtest(correct, labelled).proportion_ci(confidence_level=confidence, method="wilson")
    # scipy hands back numpy scalars; plain floats keep the report JSON-ready.
    return float(ci.low), float(ci.high)


def precision(outcomes: Iterable[ActionOutcome], *, confidence: float = 0.95) -> Precision:
    """Share of labelled outcomes where acting was right (`ActionOutcome.correct`), with a
    Wilson interval.

    Unlabelled outcomes do not count either way: guessing their verdict would
    flatter or slander the policy with no evidence.
    """
    _check_confidence(confidence)
    labelled = [o for o in outcomes if o.correct is not None]
    correct = sum(1 for o in labelled if o.correct)
    if not labelled:
        return Precision(correct=0, labelled=0, value=None, low=None, high=None)
    low, high = _wilson(correct, len(labelled), confidence)
    return Precision(
        correct=correct, labelled=len(labelled), value=correct / len(labelled), low=low, high=high
    )


def _counts(outcomes: Sequence[ActionOutcome]) -> DispositionCounts:
    seen = Counter(o.disposition for o in outcomes)
    return DispositionCounts(
        executed=seen["executed"],
        proposed=seen["proposed"],
        notified=seen["notified"],
        escalated=seen["escalated"],
        other=sum(n for d, n in seen.items() if d not in _COUNTED),
    )


def _sweep(
    outcomes: Sequence[ActionOutcome], thresholds: Iterable[int], confidence: float
) -> tuple[SweepPoint, ...]:
    recorded = {t for o in outcomes for t in o.at_threshold}
    points = []
    for t in thresholds:
        # A threshold the replay never re-ran is unknown, not "no executions":
        # leaving it out keeps a missing measurement from reading as a safe setting.
        if t not in recorded:
            continue
        executed = [o for o in outcomes if o.at_threshold.get(t) == "executed"]
        points.append(
            SweepPoint(
                threshold=t,
                executions=len(executed),
                precision=precision(executed, confidence=confidence),
            )
        )
    return tuple(points)


def figures(
    outcomes: Iterable[ActionOutcome],
    *,
    thresholds: Iterable[int] = DEFAULT_THRESHOLDS,
    confidence: float = 0.95,
) -> tuple[ActionFigures, ...]:
    """Counts, precision of executions and of proposals, and the sweep, per (playbook, action)."""
    _check_confidence(confidence)
    wanted = sorted(set(thresholds))
    groups: defaultdict[tuple[str, str], list[ActionOutcome]] = defaultdict(list)
    for o in outcomes:
        groups[(o.playbook, o.action)].append(o)
    return tuple(
        ActionFigures(
            playbook=playbook,
            action=action,
            counts=_counts(group),
            executions=precision(
                (o for o in group if o.disposition == "executed"), confidence=confidence
            ),
            proposals=precision(
                (o for o in group if o.disposition == "proposed"), confidence=confidence
            ),
            sweep=_sweep(group, wanted, confidence),
            judged=sum(1 for o in group if o.endorsed is not None),
        )
        for (playbook, action), group in sorted(groups.items())
    )


def _by_key(outcomes: Iterable[ActionOutcome]) -> dict[_Key, list[ActionOutcome]]:
    keyed: defaultdict[_Key, list[ActionOutcome]] = defaultdict(list)
    for o in outcomes:
        keyed[(o.alert_id, o.playbook, o.action, o.target)].append(o)
    return keyed


def changes(
    current: Iterable[ActionOutcome], candidate: Iterable[ActionOutcome]
) -> tuple[Change, ...]:
    """Actions whose disposition differs between two runs, sorted by alert, playbook,
    action and target; one that only a single run put forward shows `absent` on the other."""
    before, after = _by_key(current), _by_key(candidate)
    found: list[Change] = []
    for key in sorted(before.keys() | after.keys()):
        # The same action on the same target twice for one alert is paired in replay
        # order, so a duplicate is neither lost nor counted as a change by itself.
        for old, new in zip_longest(before.get(key, []), after.get(key, [])):
            was = old.disposition if old is not None else ABSENT
            now = new.disposition if new is not None else ABSENT
            if was == now:
                continue
            labelled = old if old is not None and old.verdict is not None else new
            alert_id, playbook, action, target = key
            found.append(
                Change(
                    alert_id=alert_id,
                    playbook=playbook,
                    action=action,
                    target=target,
                    current=was,
                    candidate=now,
                    verdict=labelled.verdict if labelled is not None else None,
                )
            )
    return tuple(found)


def build_report(
    current: Sequence[ActionOutcome],
    candidate: Sequence[ActionOutcome] | None = None,
    *,
    alerts: int,
    confidence: float = 0.95,
) -> CalibrationReport:
    """The whole calibration of `alerts` replayed alerts under the current config and,
    when given, a candidate. `labelled` counts the alerts that put an action forward
    and carry a label (a verdict, or a judgement of the action): an alert with no action
    leaves no outcome to read a label from."""
    _check_confidence(confidence)
    every = [*current, *(candidate or ())]
    return CalibrationReport(
        alerts=alerts,
        labelled=len({o.alert_id for o in every if o.correct is not None}),
        confidence=confidence,
        current=figures(current, confidence=confidence),
        candidate=figures(candidate, confidence=confidence) if candidate is not None else None,
        changes=changes(current, candidate) if candidate is not None else (),
    )
