"""What a calibration measures: labelled outcomes of replayed decisions, and the figures.

A calibration replays labelled past alerts in shadow mode and records, for every
action the playbooks put forward, how the policy disposed of it and what the
analyst finally said about the incident. `stats` turns those records into
precision figures with Wilson intervals and a threshold sweep; `report` renders
them as text, JSON and a self-contained HTML page.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from soc_agent.models.verdict import Verdict

__all__ = [
    "ActionFigures",
    "ActionOutcome",
    "CalibrationReport",
    "Change",
    "DispositionCounts",
    "Precision",
    "SweepPoint",
    "Verdict",
]


@dataclass(frozen=True)
class ActionOutcome:
    """One action put forward for one replayed alert, the verdict of its incident and,
    when an analyst judged this action itself (approved, rejected, upheld or rolled it
    back), that judgement."""

    alert_id: str
    incident_id: str
    playbook: str
    action: str
    target: str  # the entity key, `user:m.chen@acme.example`
    score: float
    disposition: str  # executed | proposed | notified | escalated | suppressed | ...
    rule: str  # the policy rule that decided it (`threshold.execute`, `guardrail.four_eyes`)
    verdict: Verdict | None  # None: the incident carries no verdict
    # The disposition the policy gives this same action at each execute_at of the sweep
    # (the pure policy re-run with only execute_at changed): {threshold: disposition}.
    at_threshold: dict[int, str] = field(default_factory=dict)
    # ... and at each autonomy level for this action (3-5, the agent's own level lifted
    # to 5 so the action's level is the one that counts): {level: disposition}.
    at_level: dict[int, str] = field(default_factory=dict)
    endorsed: bool | None = None  # None: no analyst judged this action itself

    @property
    def correct(self) -> bool | None:
        """Was acting right? The analyst's judgement of the action outranks the incident's
        verdict (a real incident can still hold a wrong block); None when neither exists."""
        if self.endorsed is not None:
            return self.endorsed
        return self.verdict.warrants_action if self.verdict is not None else None


@dataclass(frozen=True)
class Precision:
    """Correct / labelled with a Wilson interval; `None` figures when nothing is labelled."""

    correct: int
    labelled: int
    value: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class DispositionCounts:
    executed: int = 0
    proposed: int = 0
    notified: int = 0
    escalated: int = 0
    other: int = 0


@dataclass(frozen=True)
class SweepPoint:
    """At `threshold` (execute_at), how many executions and how precise they were."""

    threshold: int
    executions: int
    precision: Precision


@dataclass(frozen=True)
class Change:
    """One action whose disposition differs between the current and candidate config."""

    alert_id: str
    playbook: str
    action: str
    target: str
    current: str
    candidate: str
    verdict: Verdict | None


@dataclass(frozen=True)
class ActionFigures:
    """Everything measured for one (playbook, action)."""

    playbook: str
    action: str
    counts: DispositionCounts
    executions: Precision
    proposals: Precision
    sweep: tuple[SweepPoint, ...]
    judged: int = 0  # outcomes labelled by a judgement of the action itself


@dataclass(frozen=True)
class CalibrationReport:
    """The whole calibration: figures per action under the current config and, when a
    candidate was given, under it too, with the alerts whose disposition changes."""

    alerts: int
    labelled: int
    confidence: float
    current: tuple[ActionFigures, ...]
    candidate: tuple[ActionFigures, ...] | None = None
    changes: tuple[Change, ...] = ()
