"""Autonomy advice: per action, the highest level its measured precision supports.

For each action (across playbooks: `policy.action_autonomy` is keyed by action)
and each level from 5 down to 3, the executions the policy would make with the
action at that level are measured against the analysts' verdicts. The suggestion
is the highest level whose executions number at least `min_cases` labelled
cases with a precision of at least `min_precision` (the point estimate; the
Wilson interval is printed beside it). Without such a level the action should
execute nothing on its own: level 2 (every action proposed). The advice is
printed as a ready-to-paste `action_autonomy` block; nothing is applied.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from soc_agent.calibration.model import ActionOutcome, Precision
from soc_agent.calibration.report import describe
from soc_agent.calibration.stats import precision
from soc_agent.models import AutonomyLevel
from soc_agent.policy import CalibrationPolicy

__all__ = ["Suggestion", "as_block", "suggest"]

_FALLBACK = AutonomyLevel.COLLABORATOR
_ACTING = frozenset({"executed", "proposed", "escalated"})


@dataclass(frozen=True)
class Suggestion:
    action: str
    level: AutonomyLevel
    # The figures behind it: executions at each measured level, highest first.
    measured: tuple[tuple[AutonomyLevel, Precision], ...]
    why: str


def _suggest_one(
    action: str, outcomes: Sequence[ActionOutcome], rule: CalibrationPolicy, confidence: float
) -> Suggestion:
    measured: list[tuple[AutonomyLevel, Precision]] = []
    for level in sorted({lvl for o in outcomes for lvl in o.at_level}, reverse=True):
        executed = [o for o in outcomes if o.at_level.get(level) == "executed"]
        measured.append((AutonomyLevel(level), precision(executed, confidence=confidence)))
    for level, p in measured:
        if p.labelled >= rule.min_cases and p.value is not None and p.value >= rule.min_precision:
            why = (
                f"executions at level {int(level)}: {describe(p, confidence)} "
                f"clear {rule.min_precision:g} over >= {rule.min_cases} labelled cases"
            )
            return Suggestion(action, level, tuple(measured), why)
    best = max(measured, key=lambda m: m[1].labelled, default=None)
    shown = f"{describe(best[1], confidence)} at level {int(best[0])}" if best else "none"
    why = (
        f"no level's executions clear {rule.min_precision:g} over >= {rule.min_cases} "
        f"labelled cases (most measured: {shown}): propose, do not execute"
    )
    return Suggestion(action, _FALLBACK, tuple(measured), why)


def suggest(
    outcomes: Iterable[ActionOutcome], rule: CalibrationPolicy, *, confidence: float = 0.95
) -> list[Suggestion]:
    """One suggestion per action that any level would let act (executed, proposed or
    escalated): an action that is only ever a notification needs no autonomy advice."""
    by_action: dict[str, list[ActionOutcome]] = defaultdict(list)
    for outcome in outcomes:
        by_action[outcome.action].append(outcome)
    return [
        _suggest_one(a, by_action[a], rule, confidence)
        for a in sorted(by_action)
        if any(_acts(o) for o in by_action[a])
    ]


def _acts(outcome: ActionOutcome) -> bool:
    return any(d in _ACTING for d in (outcome.disposition, *outcome.at_level.values()))


def as_block(suggestions: Sequence[Suggestion]) -> str:
    """The advice as YAML to paste under `policy:` (each line says why)."""
    lines = [
        "# soc-agent policy suggest: paste under `policy:` after review; nothing was changed.",
        "action_autonomy:",
    ]
    for s in suggestions:
        lines.append(f"  {s.action}: {int(s.level)}  # {s.level.name.lower()}: {s.why}")
    return "\n".join(lines)
