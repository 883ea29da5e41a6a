"""Urgency: the order of the analyst queue, most urgent first."""

from __future__ import annotations

import math

from soc_agent.models.alert import Severity
from soc_agent.policy.guardrails import normalise_criticality

__all__ = ["CRITICALITY_SCORE", "urgency"]

CRITICALITY_SCORE: dict[str, int] = {"low": 25, "medium": 50, "high": 75, "critical": 100}


def urgency(severity: Severity, score: float, criticality: str) -> float:
    """0.5 * severity score + 0.35 * investigation score + 0.15 * target criticality score.

    Severity scores are Severity.score (informational 10 ... critical 95); the
    investigation score is clamped to 0-100 (NaN counts as 0); criticality scores are
    low 25, medium 50, high 75, critical 100 (unknown -> medium). The result lies in
    8.75-97.5: severity dominates, then the evidence, then what the target is worth.
    """
    clamped = 0.0 if math.isnan(score) else min(100.0, max(0.0, score))
    asset = CRITICALITY_SCORE[normalise_criticality(criticality)]
    return 0.5 * severity.score + 0.35 * clamped + 0.15 * asset
